"""The schedule arithmetic, exhaustively: for any run durations, each policy obeys its rule."""

from __future__ import annotations

import math
import random

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from loopsvc import _schedule
from loopsvc._schedule import grid_index, interval, jitter_offset, phase, plan_next, restart_delay

from .helpers import Recorder

periods = st.floats(min_value=0.01, max_value=1e4, allow_nan=False)
durations = st.lists(st.floats(min_value=0, max_value=50, allow_nan=False), min_size=1, max_size=30)


@given(period=periods, due=st.floats(-1e6, 1e6), now=st.floats(-1e6, 1e6))
def test_delay_starts_at_the_due_time_or_at_once(period: float, due: float, now: float) -> None:
    """ "delay": the slot is max(due, now); late exactly when due has passed; nothing skipped."""
    plan = plan_next("delay", due=due, now=now, origin=0.0, period=period)
    assert plan.slot == max(due, now)
    assert plan.late == (due < now)
    assert plan.skipped == 0


@given(period=periods, origin=st.floats(-1e4, 1e4), k=st.integers(0, 10_000), late_by=st.floats(0, 1e5))
def test_skip_lands_on_the_next_grid_point_and_counts_the_missed(
    period: float, origin: float, k: int, late_by: float
) -> None:
    """ "skip": the slot is on the grid, not before now, and the points passed over are counted."""
    due = origin + k * period
    now = due + late_by
    plan = plan_next("skip", due=due, now=now, origin=origin, period=period)
    index = (plan.slot - origin) / period
    assert math.isclose(index, round(index), abs_tol=1e-6)
    assert plan.slot >= now - 1e-6 * period
    assert plan.slot - period < now  # the first point still ahead, not a later one
    assert plan.skipped == round(index) - k
    assert not plan.late


def test_skip_after_an_overrun_of_two_and_a_half_intervals() -> None:
    """A 25 s run of a 10 s interval started at 0 skips 10 and 20 and lands on 30."""
    plan = plan_next("skip", due=10.0, now=25.0, origin=0.0, period=10.0)
    assert plan == (30.0, 2, False)


@given(period=periods, failures=st.integers(0, 5000), cap=st.none() | st.floats(0.01, 1e9))
def test_backoff_grows_doubles_and_caps(period: float, failures: int, cap: float | None) -> None:
    """interval() is period without failures or cap, else min(period * 2**k, cap), never < period."""
    value = interval(period, failures, cap)
    if cap is None or failures == 0:
        assert value == period
    else:
        assert value == max(period, min(period * 2.0 ** min(failures, 1023), cap))
        assert period <= value


def test_backoff_sequence_is_20_40_80_then_the_cap() -> None:
    """With a 10 s interval and a 100 s cap: 20, 40, 80, 100, 100."""
    assert [interval(10, k, 100) for k in range(6)] == [10, 20, 40, 80, 100, 100]


@given(jitter=st.floats(0, 0.999), period=periods, seed=st.integers())
def test_jitter_offset_stays_below_the_fraction(jitter: float, period: float, seed: int) -> None:
    """A jitter offset is in [0, jitter * period), hence before the next slot."""
    offset = jitter_offset(jitter, period, random.Random(seed))
    assert 0 <= offset <= jitter * period
    assert offset < period


@given(name=st.text(min_size=1), period=periods)
def test_phase_is_stable_and_within_the_period(name: str, period: float) -> None:
    """The spread phase depends only on the name and lies in [0, period)."""
    assert phase(name, period) == phase(name, period)
    assert 0 <= phase(name, period) < period


def test_phase_values_are_fixed_across_processes() -> None:
    """The phase comes from sha256, not hash(): the same number in every process."""
    assert len({round(phase(f"svc-{i}", 60), 6) for i in range(1000)}) == 1000
    assert round(phase("a", 1.0), 12) == round(int("ca978112ca1bbdca", 16) / 2**64, 12)


@given(failures=st.integers(1, 200), seed=st.integers())
def test_restart_delay_doubles_from_one_second_up_to_sixty(failures: int, seed: int) -> None:
    """Restart n waits 2**(n-1) s (jittered down by up to a quarter), never above 60 s."""
    base = min(2.0 ** (failures - 1), _schedule.RESTART_BACKOFF_MAX)
    assert 0.75 * base <= restart_delay(failures, random.Random(seed)) <= base


def test_grid_index_tolerates_float_error() -> None:
    """A point that is on the grid but for float error counts as on the grid."""
    assert grid_index(0.30000000000000004, 0.1, 0.1) == 2


def _simulate(policy: str, period: float, runs: list[float]) -> tuple[list[float], Recorder]:
    service = Recorder(period, handle_signals=False, durations=runs, overrun=policy)

    async def main() -> float:
        t0 = trio.current_time()
        await service.start(loops=len(runs))
        return t0

    t0 = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return [s - t0 for s in service.starts], service


@settings(max_examples=60, deadline=None)
@given(period=st.integers(1, 20), runs=durations)
def test_a_real_service_obeys_delay_for_any_durations(period: int, runs: list[float]) -> None:
    """Under "delay" each run starts at max(previous start + period, previous end)."""
    starts, service = _simulate("delay", period, runs)
    expected = [0.0]
    for duration in runs[:-1]:
        expected.append(max(expected[-1] + period, expected[-1] + duration))
    assert starts == expected
    assert service.stats.overruns == sum(d > period for d in runs)


@settings(max_examples=60, deadline=None)
@given(period=st.integers(1, 20), runs=durations)
def test_a_real_service_obeys_skip_for_any_durations(period: int, runs: list[float]) -> None:
    """Under "skip" every start is on the grid, after the previous run, the first such point."""
    starts, service = _simulate("skip", period, runs)
    skipped = 0
    for start, previous, duration in zip(starts[1:], starts, runs, strict=False):
        assert start % period == 0
        end = previous + duration
        assert end <= start < max(end, previous + period) + period
        skipped += round((start - previous) / period) - 1
    assert service.stats.skipped == skipped
