"""Files only the service's user may read (0600), written whole or not at all."""

from __future__ import annotations

import json
import os


def write_private_json(path: str, data: object) -> None:
    """Write `data` as JSON to `path`, 0600, through a temporary file and a rename."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = path + ".tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
    os.replace(temporary, path)
