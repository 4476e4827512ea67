"""History as CSV: a header line, then one row per point, for spreadsheets."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable
from typing import Any

from server.series import STORED


def history_csv_text(samples: Iterable[dict[str, Any]], step: int, header: bool = True) -> str:
    """Every stored series with its min and max; a raw sample's min and max are itself."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        names = ["ts", "time_utc", "step", "n"]
        for series in STORED:
            names += [str(series.column), f"{series.column}_min", f"{series.column}_max"]
        writer.writerow(names)
    for sample in samples:
        bands = sample.get("bands") or {}
        row: list[Any] = [
            sample["ts"],
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sample["ts"])),
            sample.get("step", step),
            sample.get("n", 1),
        ]
        for series in STORED:
            value = series.value(sample)
            low, high = bands.get(series.metric, (value, value))
            row += [_cell(value), _cell(low), _cell(high)]
        writer.writerow(row)
    return out.getvalue()


def _cell(value: Any) -> Any:
    return "" if value is None else value
