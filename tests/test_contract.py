"""docs/contract.md's table of keys, which tests/contract.py checks payloads with, says
what the rest of the document says, and admits what an agent may send."""

from __future__ import annotations

import re

from server.fleet import schema
from tests.contract import CONTRACT, KEYS, KEYS_HEADING

TEXT = CONTRACT.read_text()


def block_keys(block: str, root: str) -> dict[str, set[str]]:
    """The keys of a payload as the contract's code blocks write it
    (`{"cpu": {"percent": 12.5}, "disks": [{"mount"}]}`), by path (`sample.disks[]`)."""
    keys: dict[str, set[str]] = {}
    opened: list[tuple[str, str]] = []  # ("{" or "[", path) of each open bracket
    key = ""  # the last key of the innermost table, once its ":" came
    after_colon = False
    for token in re.findall(r'"[^"]*"|[{}\[\]:,]|[^\s{}\[\]:,"]+', block):
        if token in "{[":
            if not opened:
                path = root
            elif opened[-1][0] == "[":
                path = opened[-1][1] + "[]"
            else:
                path = f"{opened[-1][1]}.{key}"
            opened.append((token, path))
            if token == "{":
                keys.setdefault(path, set())
        elif token in "}]":
            opened.pop()
        elif token == ":":
            after_colon = True
            continue
        elif token.startswith('"') and opened and opened[-1][0] == "{" and not after_colon:
            key = token.strip('"')
            keys[opened[-1][1]].add(key)
        after_colon = False
    return keys


def code_block_after(label: str) -> str:
    found = re.search(rf"^{re.escape(label)}.*?\n```\n(.*?)```", TEXT, re.S | re.M)
    assert found, f"no code block after {label!r} in {CONTRACT}"
    return found.group(1)


def test_the_table_always_has_what_the_code_blocks_write() -> None:
    written = {
        **block_keys(code_block_after("`static`:"), "static"),
        **block_keys(code_block_after("`metrics`:"), "sample"),
    }
    assert set(written) <= set(KEYS), set(written) - set(KEYS)
    for path, keys in written.items():
        assert KEYS[path].always == keys, (path, KEYS[path].always ^ keys)


def test_every_key_in_the_table_is_described_in_the_document() -> None:
    described = TEXT.split(KEYS_HEADING, 1)[0] + TEXT.split(KEYS_HEADING, 1)[1].split("\n## ", 1)[1]
    for path, keys in KEYS.items():
        for key in keys.allowed:
            assert f"`{key}`" in described or f'"{key}"' in described, (path, key)


def _tables(shape: schema.Shape, path: str) -> dict[str, schema.Table]:
    """Every table in a declaration, by its path in the contract's table."""
    if isinstance(shape, schema.ListOf):
        return _tables(shape.item, path + "[]")
    if not isinstance(shape, schema.Table):
        return {}  # a value, or a table keyed by names (MapOf)
    found = {path: shape}
    for key, inner in shape.fields.items():
        found.update(_tables(inner, f"{path}.{key}"))
    return found


def test_an_agent_may_send_every_key_the_contract_has_and_no_other() -> None:
    declared = {**_tables(schema.STATIC, "static"), **_tables(schema.SAMPLE, "sample")}
    for path, table in declared.items():
        assert path in KEYS, f"{path} is declared in server/fleet/schema.py, not in the contract"
        fields = set(table.fields)
        assert fields <= KEYS[path].allowed, (path, fields - KEYS[path].allowed)
        assert KEYS[path].always <= fields, (path, KEYS[path].always - fields)
