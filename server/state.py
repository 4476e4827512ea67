"""What the app keeps for its lifetime: settings, host facts, the Sampler."""

from __future__ import annotations

import dataclasses

from server.config import Config
from server.data import StaticData
from server.worker import Sampler


@dataclasses.dataclass
class DashboardState:
    config: Config
    static: StaticData
    sampler: Sampler
    clients: int = 0
