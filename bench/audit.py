"""`make audit`: Lighthouse 12 (npm) with Debian's Chromium, on desktop and mobile.

Starts the real server on a free loopback port, waits for a few samples, runs
Lighthouse twice and prints the four category scores, the layout shift and
every audit that did not pass. Writes bench/results/audit.md.

`--containers N`: the same with N containers running on a dockerd of its own
(the page's Containers panel full, one unhealthy, one exited with an error).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from testkit.chromium import FLAGS, find_chromium
from testkit.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
LIGHTHOUSE = ROOT / "bench" / "audit" / "node_modules" / ".bin" / "lighthouse"
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
TARGETS = {
    "desktop": {"performance": 0.95, "accessibility": 1.0, "best-practices": 1.0},
    "mobile": {"performance": 0.9, "accessibility": 1.0, "best-practices": 1.0},
}
CLS_TARGET = 0.05


def run(url: str, form: str, chromium: str, out: Path) -> dict[str, Any]:
    flags = [f for f in FLAGS if not f.startswith("--remote-debugging")]
    command = [
        str(LIGHTHOUSE), url, "--quiet", "--output=json", f"--output-path={out}",
        f"--only-categories={','.join(CATEGORIES)}", f"--chrome-flags={' '.join(flags)}",
        *(["--preset=desktop"] if form == "desktop" else []),
    ]  # fmt: skip
    env = {**os.environ, "CHROME_PATH": chromium}
    subprocess.run(command, check=True, env=env, timeout=300)
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def failed_audits(report: dict[str, Any]) -> list[str]:
    lines = []
    for audit in report["audits"].values():
        score = audit.get("score")
        mode = audit.get("scoreDisplayMode")
        if score is not None and mode in ("binary", "metricSavings", "numeric") and score < 0.9:
            lines.append(f"{audit['id']}: {audit.get('displayValue') or audit['title']}")
    return lines


@contextlib.contextmanager
def containers(count: int) -> Iterator[list[str]]:
    """Server arguments for a page with `count` containers (none: no arguments)."""
    if not count:
        yield []
        return
    from testkit.docker import IMAGE, Docker

    tools = [shutil.which(n) or f"/usr/sbin/{n}" for n in ("dockerd", "docker", "busybox")]
    docker = Docker(*tools).start()
    try:
        ids = [docker.cli("create", "--network", "none", "--name", f"app-{k:03d}", IMAGE,
                          "sleep", "100000").stdout.strip() for k in range(count - 2)]  # fmt: skip
        docker.cli("start", *ids)
        docker.run("sick", "--health-cmd", "false", "--health-interval", "1s",
                   "--health-retries", "1", IMAGE, "sleep", "100000")  # fmt: skip
        docker.run("crash", IMAGE, "sh", "-c", "exit 3")
        yield ["--containers", docker.socket]
    finally:
        docker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Lighthouse on the real server")
    parser.add_argument("--containers", type=int, default=0, help="containers running")
    count = parser.parse_args().containers
    chromium = find_chromium()
    if chromium is None or not LIGHTHOUSE.exists():
        sys.exit("make audit needs chromium (make system-deps) and lighthouse (npm, bench/audit)")
    rows = ["| form | " + " | ".join(CATEGORIES) + " | layout shift | failed audits |"]
    rows.append("|" + " --- |" * (len(CATEGORIES) + 3))
    missed = []
    with tempfile.TemporaryDirectory(prefix="dashboard-audit-") as tmp, containers(count) as args:
        server = ServerProcess(Path(tmp) / "logs", *args).start()
        try:
            time.sleep(5)  # a few samples in the history
            for form in ("desktop", "mobile"):
                report = run(server.url + "/", form, chromium, Path(tmp) / f"{form}.json")
                scores = {c: report["categories"][c]["score"] for c in CATEGORIES}
                cls = report["audits"]["cumulative-layout-shift"]["numericValue"]
                failed = failed_audits(report)
                print(f"{form}: " + ", ".join(f"{c} {s:.2f}" for c, s in scores.items())
                      + f", layout shift {cls:.3f}")  # fmt: skip
                for line in failed:
                    print(f"  failed: {line}")
                for category, target in TARGETS[form].items():
                    if scores[category] < target:
                        missed.append(f"{form} {category} {scores[category]:.2f} < {target}")
                if cls > CLS_TARGET:
                    missed.append(f"{form} layout shift {cls:.3f} > {CLS_TARGET}")
                rows.append(
                    f"| {form} | " + " | ".join(f"{scores[c]:.2f}" for c in CATEGORIES)
                    + f" | {cls:.3f} | {'; '.join(failed) or 'none'} |"
                )  # fmt: skip
        finally:
            server.stop()
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    name = f"audit-{count}-containers.md" if count else "audit.md"
    (results / name).write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    print("targets missed: " + ("; ".join(missed) if missed else "none"))


if __name__ == "__main__":
    main()
