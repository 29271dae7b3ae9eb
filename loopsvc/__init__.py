"""loopsvc: periodic loop services on Trio structured concurrency (and anyio, and asyncio)."""

from __future__ import annotations

from ._group import ServiceGroup as ServiceGroup
from ._group import run_multiple_services as run_multiple_services
from ._group import run_services as run_services
from ._service import LoopService as LoopService
from ._stats import CurrentRun as CurrentRun
from ._stats import ServiceState as ServiceState
from ._stats import ServiceStats as ServiceStats

__version__ = "0.1.0"

__all__ = [
    "CurrentRun",
    "LoopService",
    "ServiceGroup",
    "ServiceState",
    "ServiceStats",
    "__version__",
    "run_multiple_services",
    "run_services",
]
