"""The documentation holds together: every relative link resolves, the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 300

FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
# [text](target) and ![alt](target); the text may run over a line break.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:")


def pages() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "bench" / "README.md"]
    found += sorted((ROOT / "docs").glob("*.md"))
    found += sorted((ROOT / "bench" / "results").glob("[0-9]*.md"))
    return found


def outside_fences(text: str) -> list[str]:
    """The lines outside fenced code blocks (a fence's lines become empty)."""
    kept: list[str] = []
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            kept.append("")
        else:
            kept.append("" if fenced else line)
    return kept


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation out, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in outside_fences(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(path: Path) -> list[str]:
    """Link targets outside code; inline code becomes a word (a link's text may hold it)."""
    lines = [INLINE_CODE.sub("code", line) for line in outside_fences(path.read_text())]
    return LINK.findall("\n".join(lines))


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path):
        if target.startswith(EXTERNAL):
            continue
        file_part, _, anchor = target.partition("#")
        goal = path if not file_part else (path.parent / file_part).resolve()
        if not goal.exists():
            problems.append(f"{target}: no such file")
        elif anchor and goal.suffix == ".md" and anchor not in anchors(goal):
            problems.append(f"{target}: no heading #{anchor} in {goal.name}")
    return problems


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert page.exists(), page
    assert broken_links(page) == [], f"broken links in {page.relative_to(ROOT)}"


def test_a_bad_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# A heading: with `code`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#a-heading-with-code) [ok](#top) [web](https://x.y)\n"
        "# Top\n"
        "[gone](missing.md) ![gone too](img/none.png)\n"
        "[bad anchor](there.md#nowhere) [also\nbad](#nothing)\n"
        "```\n[not a link](inside/a/fence.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "img/none.png: no such file",
        "there.md#nowhere: no heading #nowhere in there.md",
        "#nothing: no heading #nothing in page.md",
    ]


def test_readme_fits_on_a_few_screens() -> None:
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference to docs/"
