"""Checks of payloads against the contract in docs/contract.md, shared by the tests.

The keys each payload may carry are read from the contract's table ("Every key of
`static` and a sample"): a key a payload has that the table does not list fails,
as does a key of its first column that is missing. tests/test_contract.py checks
the table against the rest of the document and the agents' declaration.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from testkit.serverproc import ROOT

CONTRACT = ROOT / "docs" / "contract.md"
KEYS_HEADING = "## Every key of `static` and a sample"


@dataclasses.dataclass(frozen=True)
class Keys:
    """One payload's keys: those it always has, and those it may also have."""

    always: frozenset[str]
    sometimes: frozenset[str]

    @property
    def allowed(self) -> frozenset[str]:
        return self.always | self.sometimes


def key_table(text: str) -> dict[str, Keys]:
    """The table under KEYS_HEADING: each payload's path (`sample.disks[]`) and its keys."""
    section = text.split(KEYS_HEADING, 1)[1].split("\n## ", 1)[0]
    table: dict[str, Keys] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 3 or not cells[0].startswith("`"):
            continue  # prose, the header, the rule under it
        path, always, sometimes = (re.findall(r"`([^`]+)`", cell) for cell in cells)
        assert len(path) == 1 and path[0] not in table, line
        table[path[0]] = Keys(frozenset(always), frozenset(sometimes))
    assert table, f"no table of keys under {KEYS_HEADING!r} in {CONTRACT}"
    return table


KEYS = key_table(CONTRACT.read_text())
STATIC_KEYS = KEYS["static"].always
SAMPLE_KEYS = KEYS["sample"].always


def check_keys(path: str, payload: dict[str, Any], left_out: frozenset[str] = frozenset()) -> None:
    """`payload` has the keys the contract's table gives `path`, no fewer (but `left_out`),
    no other."""
    keys = KEYS[path]
    missing = keys.always - left_out - set(payload)
    assert not missing, f"{path} lacks {sorted(missing)}"
    undocumented = set(payload) - keys.allowed
    assert not undocumented, f"{path} has {sorted(undocumented)}: not in docs/contract.md"


def _percent_or_null(value: Any) -> None:
    assert value is None or (isinstance(value, int | float) and 0 <= value <= 100), value


def _size_or_null(value: Any) -> None:
    assert value is None or (isinstance(value, int) and value >= 0), value


def check_static(static: dict[str, Any]) -> None:
    check_keys("static", static)
    check_keys("static.os", static["os"])
    check_keys("static.cpu", static["cpu"])
    for address in static["addresses"]:
        check_keys("static.addresses[]", address)
    assert isinstance(static["hostname"], str) and static["hostname"]


def check_sample(sample: dict[str, Any], with_processes: bool = True) -> None:
    """A sample as a page gets it (`metrics`, `history`, `/api/metrics`)."""
    check_keys(
        "sample", sample, left_out=frozenset() if with_processes else frozenset({"processes"})
    )
    assert "mono" not in sample  # an agent's clock, for the hub only
    assert isinstance(sample["ts"], float) and isinstance(sample["seq"], int)
    check_keys("sample.cpu", sample["cpu"])
    _percent_or_null(sample["cpu"]["percent"])
    for core in sample["cpu"]["per_core"] or []:
        _percent_or_null(core)
    if sample["memory"] is not None:
        check_keys("sample.memory", sample["memory"])
        _percent_or_null(sample["memory"]["percent"])
        for key in ("total", "used", "available"):
            _size_or_null(sample["memory"][key])
    if sample["swap"] is not None:
        check_keys("sample.swap", sample["swap"])
    assert any(d["mount"] == "/" for d in sample["disks"])
    for disk in sample["disks"]:
        check_keys("sample.disks[]", disk)
        assert disk.get("answering") in (True, False, None)  # None: a downsampled point
        _percent_or_null(disk["percent"])
        for key in ("total", "used", "free"):
            _size_or_null(disk[key])
    check_keys("sample.disk_io", sample["disk_io"])
    for key in ("read_bps", "write_bps"):
        _size_or_null(sample["disk_io"][key])
    check_keys("sample.net", sample["net"])
    for key in ("rx_bps", "tx_bps"):
        _size_or_null(sample["net"][key])
    assert sample["load"] is None or len(sample["load"]) == 3
    assert sample["uptime"] is None or sample["uptime"] > 0
    if with_processes:
        for proc in sample["processes"]:
            check_keys("sample.processes[]", proc)
    if sample.get("server") is not None:
        check_keys("sample.server", sample["server"])
