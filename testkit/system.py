"""What a test needs from the machine (a binary, root, a file): skipped where it is
missing, failed under CI (CI=true), where `make system-deps` has installed it all."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def skip_or_fail_under_ci(reason: str) -> NoReturn:
    """Skip the test for `reason`; under CI, where nothing may be missing, fail it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"under CI: {reason}")
    pytest.skip(reason)


def require_binary(*names: str) -> str:
    """The path of the first of `names` on PATH (or in /usr/sbin); skip if none (fail under CI)."""
    for name in names:
        path = shutil.which(name) or (
            f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
        )
        if path:
            return path
    skip_or_fail_under_ci(f"{' or '.join(names)} is not installed (make system-deps installs it)")
