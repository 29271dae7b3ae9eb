# Schedule arithmetic: pure functions of numbers, no clock, no tasks.
#
# A service has *slots*, the instants its runs are due, on the event loop's clock. Run k+1's
# slot is counted from run k's *slot*, not from when the run ended (so a run that takes 4 s of
# a 10 s interval is followed by a 6 s wait) and not from its jittered start (so jitter never
# accumulates). When a run overruns, the policy decides:
#
# - "delay": the next run starts at once and the schedule re-anchors there (Prefect's rule,
#   `next = max(due, now)`);
# - "skip": the grid `origin + k * period` is kept; the next run takes the first grid point
#   still ahead and the points passed over are counted, never run back to back.
#
# Grid points are computed as `origin + k * period` with an integer k, never by adding the
# period up, so float error does not accumulate over a long run.
from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    import random

Overrun = Literal["delay", "skip"]
OVERRUN_POLICIES: tuple[Overrun, ...] = ("delay", "skip")

# Tolerance, in periods, for deciding that an instant lies on a grid point.
_EPS = 1e-7
RESTART_BACKOFF_MAX = 60.0


class Plan(NamedTuple):
    """Where the next run goes."""

    slot: float
    """The slot of the next run (before jitter)."""
    skipped: int
    """Grid points passed over because the previous run overran ("skip" only)."""
    late: bool
    """The slot was already past ("delay" only): the run starts at once, without jitter."""


def grid_index(t: float, origin: float, period: float) -> int:
    """The index of the first grid point at or after `t`."""
    return math.ceil((t - origin) / period - _EPS)


def plan_next(policy: Overrun, *, due: float, now: float, origin: float, period: float) -> Plan:
    """Plan the next slot, given when it is `due` and the time `now`.

    Args:
        policy: "delay" or "skip".
        due: when the next run is due (the previous slot plus the interval).
        now: the current time on the loop clock.
        origin: the first slot; the grid of the "skip" policy starts there.
        period: the loop interval in seconds.
    """
    if policy == "delay":
        if due >= now:
            return Plan(due, 0, late=False)
        return Plan(now, 0, late=True)
    first = grid_index(due, origin, period)
    if origin + first * period >= now:
        return Plan(origin + first * period, 0, late=False)
    ahead = max(grid_index(now, origin, period), first)
    return Plan(origin + ahead * period, ahead - first, late=False)


def interval(period: float, consecutive_failures: int, backoff_max: float | None) -> float:
    """The wait between two slots: `period`, or exponential backoff after failures.

    After k consecutive failed runs the interval is `min(period * 2**k, backoff_max)`, never
    shorter than `period`; without `backoff_max` it is always `period`.
    """
    if backoff_max is None or consecutive_failures <= 0:
        return period
    grown = period * 2.0 ** min(consecutive_failures, 1023)
    return max(period, min(grown, backoff_max))


def jitter_offset(jitter: float, period: float, rng: random.Random | None) -> float:
    """A random offset in `[0, jitter * period)` from a slot; 0 without jitter (or generator)."""
    return rng.random() * jitter * period if jitter and rng is not None else 0.0


def phase(name: str, period: float) -> float:
    """A stable phase in `[0, period)` from a hash of `name`, the same in every process."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 * period


def restart_delay(failures: int, rng: random.Random) -> float:
    """Supervisor backoff before restart number `failures`: 1, 2, 4, ... up to 60 s.

    Jittered down by up to a quarter, so services that fail together do not restart together,
    and never above the cap.
    """
    base = min(2.0 ** min(max(failures - 1, 0), 64), RESTART_BACKOFF_MAX)
    return base * (1.0 - 0.25 * rng.random())
