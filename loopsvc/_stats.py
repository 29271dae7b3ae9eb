"""Status snapshots: what a service is doing and how it has done, as frozen values."""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pendulum

Outcome = Literal["ok", "error", "timeout", "cancelled"]


class ServiceState(enum.Enum):
    """Where a service is in its lifecycle."""

    IDLE = "idle"
    """Built, never started."""
    STARTING = "starting"
    """`setup()` is running."""
    WAITING = "waiting"
    """Waiting for its next slot."""
    RUNNING = "running"
    """`run_once()` is in flight."""
    STOPPING = "stopping"
    """`shutdown()` is running."""
    STOPPED = "stopped"
    """`start()` has returned."""


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceStats:
    """A snapshot of one service. Times are pendulum DateTimes in UTC, or None."""

    name: str
    state: ServiceState
    runs: int
    """Runs that completed: always `successes + failures + timeouts`."""
    successes: int
    failures: int
    """Runs that raised an Exception."""
    timeouts: int
    """Runs cancelled by `run_timeout_seconds`."""
    overruns: int
    """Runs that took longer than `loop_seconds`."""
    skipped: int
    """Slots passed over by the "skip" policy."""
    consecutive_failures: int
    restarts: int
    """Times a ServiceGroup restarted this service after its `start()` failed."""
    last_error: str | None
    """`repr()` of the last run's exception or timeout, None after a success."""
    last_duration_seconds: float | None
    started_at: pendulum.DateTime | None
    last_run_started_at: pendulum.DateTime | None
    last_success_at: pendulum.DateTime | None
    next_run_at: pendulum.DateTime | None
    healthy: bool
    """Running, and the last success (or the start) is no older than three intervals."""


@dataclasses.dataclass(frozen=True, slots=True)
class CurrentRun:
    """The run in flight. Times are on the loop clock (`anyio.current_time()`)."""

    iteration: int
    """1 for the first run of this `start()`."""
    scheduled_at: float
    """When the schedule wanted it to start (jitter included; `run_now()` runs: the request)."""
    started_at: float
    late_seconds: float
    """`started_at - scheduled_at`."""
    skipped_before: int
    """Slots the "skip" policy passed over just before this run."""


@dataclasses.dataclass(frozen=True, slots=True)
class RunRecord:
    """One run that ended. Times are on the loop clock (`anyio.current_time()`)."""

    service: str
    iteration: int
    """1 for the first run of a `start()`."""
    scheduled_at: float
    started_at: float
    duration_seconds: float
    outcome: Outcome
    """"ok", "error" (it raised), "timeout" (run_timeout_seconds) or "cancelled" (from outside)."""
    error: BaseException | None
    """The exception for "error" and "cancelled", a TimeoutError for "timeout", else None."""
    skipped_before: int
    """Slots the "skip" policy passed over just before this run."""
