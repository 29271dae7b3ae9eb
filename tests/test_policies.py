"""Schedule options, resilience options, run_now, status and supervision, on virtual time."""

from __future__ import annotations

import itertools
import logging
import random
import statistics

import pytest
import trio
import trio.testing

import loopsvc
from loopsvc import ServiceGroup, ServiceState
from loopsvc._schedule import phase

from .helpers import Recorder, offsets


async def test_skip_after_an_overrun_lands_on_the_grid(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """ "skip": a 25 s run of a 10 s interval skips the slots at 10 and 20 and runs at 30."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, overrun="skip", durations=[25, 1])
    await service.start(loops=3)
    assert offsets(service.starts, t0) == [0, 30, 40]
    assert service.stats.skipped == 2
    assert service.stats.overruns == 1
    assert caplog.messages[-1].endswith("longer than its loop interval of 10 seconds; skipping 2 slots")


async def test_jitter_stays_in_its_window_and_never_accumulates(autojump_clock: trio.testing.MockClock) -> None:
    """Over 1,000 runs each start is in [slot, slot + jitter * interval); the mean is centred."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, jitter=0.5, seed=7)
    await service.start(loops=1000)
    lateness = [start - 10 * k for k, start in enumerate(offsets(service.starts, t0))]
    assert all(0 <= x < 5 for x in lateness)
    assert statistics.mean(lateness) == pytest.approx(2.5, abs=0.25)
    assert trio.current_time() - t0 < 999 * 10 + 5


async def test_the_same_seed_gives_the_same_jittered_schedule(autojump_clock: trio.testing.MockClock) -> None:
    """seed= makes jitter reproducible; another seed gives another schedule."""
    runs = []
    for seed in (1, 1, 2):
        service = Recorder(handle_signals=False, jitter=0.3, seed=seed)
        t0 = trio.current_time()
        await service.start(loops=5)
        runs.append(offsets(service.starts, t0))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


async def test_spread_gives_each_name_a_stable_distinct_phase(autojump_clock: trio.testing.MockClock) -> None:
    """spread=True shifts the schedule by a phase from the name's hash, plus first_run_after."""
    t0 = trio.current_time()
    a = Recorder(60, name="alpha", spread=True, handle_signals=False)
    b = Recorder(60, name="beta", spread=True, first_run_after=5, handle_signals=False)
    await ServiceGroup([a, b], handle_signals=False, loops=2).run()
    pa, pb = phase("alpha", 60), phase("beta", 60)
    assert pa != pb
    assert offsets(a.starts, t0) == [round(pa, 9), round(pa + 60, 9)]
    assert offsets(b.starts, t0) == [round(pb + 5, 9), round(pb + 65, 9)]


async def test_first_run_after_delays_the_first_run(autojump_clock: trio.testing.MockClock) -> None:
    """first_run_after=5: runs at 5, 15."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, first_run_after=5)
    await service.start(loops=2)
    assert offsets(service.starts, t0) == [5, 15]


async def test_a_run_over_its_timeout_is_cancelled_exactly_then(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """run_timeout_seconds=3 cancels a hung run at 3 s; it counts as a timeout and the loop goes on."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, run_timeout_seconds=3, durations=[1000, 1])
    ends: list[float] = []
    original = service.shutdown

    async def shutdown() -> None:
        ends.append(trio.current_time() - t0)
        await original()

    service.shutdown = shutdown  # type: ignore[method-assign]
    await service.start(loops=2)
    assert offsets(service.starts, t0) == [0, 10]
    stats = service.stats
    assert (stats.runs, stats.successes, stats.failures, stats.timeouts) == (2, 1, 0, 1)
    assert stats.last_duration_seconds == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["Recorder: run 1 timed out after 3 seconds and was cancelled"]
    assert errors[0].exc_info is None


async def test_backoff_doubles_after_failures_up_to_the_cap_then_resets(autojump_clock: trio.testing.MockClock) -> None:
    """Failures wait 20, 40, 80, then the 100 s cap; one success resets to 10."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, backoff_max_seconds=100, fail_on=range(5))
    await service.start(loops=7)
    starts = offsets(service.starts, t0)
    assert [b - a for a, b in itertools.pairwise(starts)] == [20, 40, 80, 100, 100, 10]
    assert service.stats.consecutive_failures == 0


async def test_backoff_counts_timeouts_too(autojump_clock: trio.testing.MockClock) -> None:
    """A timeout is a failed run for backoff: 1 s timeout, then a 20 s wait."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, backoff_max_seconds=60, run_timeout_seconds=1, durations=[5])
    await service.start(loops=2)
    assert offsets(service.starts, t0) == [0, 20]


async def test_run_now_runs_a_waiting_service_at_once_and_reanchors(autojump_clock: trio.testing.MockClock) -> None:
    """run_now at 3 runs at 3 (three requests, one run); "delay" then continues at 13."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.start)
        await trio.sleep(3)
        for _ in range(3):
            service.run_now()
        await trio.sleep(11)
        await service.stop()
    assert offsets(service.starts, t0) == [0, 3, 13]


async def test_run_now_under_skip_keeps_the_grid(autojump_clock: trio.testing.MockClock) -> None:
    """ "skip": a run_now run at 3 does not move the grid: the next run is still at 10."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, overrun="skip")
    async with trio.open_nursery() as nursery:
        await nursery.start(service.start)
        await trio.sleep(3)
        service.run_now()
        await trio.sleep(8)
        await service.stop()
    assert offsets(service.starts, t0) == [0, 3, 10]


async def test_run_now_during_a_run_adds_one_run_right_after(autojump_clock: trio.testing.MockClock) -> None:
    """Requests during a 4 s run coalesce into one extra run at 4; then 14."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, durations=[4, 0, 0])
    async with trio.open_nursery() as nursery:
        await nursery.start(service.start)
        await trio.sleep(1)
        service.run_now()
        service.run_now()
        await trio.sleep(14)
        await service.stop()
    assert offsets(service.starts, t0) == [0, 4, 14]


async def test_run_now_on_a_stopped_service_does_nothing(autojump_clock: trio.testing.MockClock) -> None:
    """run_now() when not running has no effect, now or on a later start."""
    service = Recorder(handle_signals=False)
    service.run_now()
    t0 = trio.current_time()
    await service.start(loops=2)
    assert offsets(service.starts, t0) == [0, 10]


async def test_stats_add_up_after_a_random_mix(autojump_clock: trio.testing.MockClock) -> None:
    """runs == successes + failures + timeouts, each equal to what was injected."""
    rng = random.Random(3)
    plan = [rng.choice(["ok", "error", "timeout", "slow"]) for _ in range(200)]
    service = Recorder(handle_signals=False, run_timeout_seconds=5)

    async def act(n: int) -> None:
        if plan[n] == "error":
            raise KeyError(n)
        if plan[n] == "timeout":
            await trio.sleep(100)
        if plan[n] == "slow":
            await trio.sleep(4)

    service.on_run = act
    await service.start(loops=len(plan))
    stats = service.stats
    assert stats.runs == stats.successes + stats.failures + stats.timeouts == 200
    assert stats.failures == plan.count("error")
    assert stats.timeouts == plan.count("timeout")
    assert stats.successes == plan.count("ok") + plan.count("slow")
    assert stats.state is ServiceState.STOPPED


async def test_stats_and_current_run_while_running(autojump_clock: trio.testing.MockClock) -> None:
    """The snapshot tells state, times (UTC) and the run in flight with its lateness."""
    service = Recorder(handle_signals=False, durations=[12, 3], name="worker")
    assert service.stats.state is ServiceState.IDLE
    assert service.current_run is None
    async with trio.open_nursery() as nursery:
        await nursery.start(service.start)
        t0 = trio.current_time()
        await trio.sleep(13)  # the second run started at 12, two seconds late for its slot at 10
        run = service.current_run
        assert run is not None
        assert (run.iteration, run.scheduled_at - t0, run.started_at - t0, run.late_seconds) == (2, 10, 12, 2)
        stats = service.stats
        assert stats.state is ServiceState.RUNNING
        assert stats.healthy
        assert stats.started_at is not None
        assert stats.last_run_started_at is not None
        assert (stats.last_run_started_at - stats.started_at).total_seconds() == 12
        assert stats.last_run_started_at.timezone_name == "UTC"
        await trio.sleep(3)
        stats = service.stats
        assert stats.state is ServiceState.WAITING
        assert stats.next_run_at is not None
        assert (stats.next_run_at - stats.started_at).total_seconds() == 22
        assert service.current_run is None
        service.request_stop()
    assert service.stats.healthy is False


async def test_healthy_flips_when_runs_keep_failing(autojump_clock: trio.testing.MockClock) -> None:
    """Healthy while the last success is within three intervals; unhealthy after; back on success."""
    service = Recorder(handle_signals=False)
    failing = {"on": False}

    def act(n: int) -> None:
        if failing["on"]:
            raise RuntimeError("down")

    service.on_run = act
    async with trio.open_nursery() as nursery:
        await nursery.start(service.start)
        await trio.sleep(1)
        assert service.stats.healthy  # last success at 0
        failing["on"] = True
        await trio.sleep(29)  # t=30: last success 30 s ago: still within 3 x 10 s
        assert service.stats.healthy
        await trio.sleep(1)
        assert not service.stats.healthy
        failing["on"] = False
        await trio.sleep(10)  # the run at 40 succeeds
        assert service.stats.healthy
        service.request_stop()


async def test_group_stats_are_in_service_order(autojump_clock: trio.testing.MockClock) -> None:
    """ServiceGroup.stats gives one snapshot per service, in order."""
    group = ServiceGroup([Recorder(name="b"), Recorder(name="a")], handle_signals=False, loops=1)
    await group.run()
    assert [(s.name, s.runs) for s in group.stats] == [("b", 1), ("a", 1)]


class FailingSetup(Recorder):
    """setup() fails the first `failures` times it runs."""

    def __init__(self, failures: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.failures_left = failures
        self.setup_times: list[float] = []

    async def setup(self) -> None:
        self.setup_times.append(trio.current_time())
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("database down")
        await super().setup()


async def test_restart_on_failure_restarts_with_backoff(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A service whose start fails twice is restarted after ~1 s and ~2 s, then runs."""
    t0 = trio.current_time()
    service = FailingSetup(2, name="db", handle_signals=False, seed=5)
    group = ServiceGroup([service], handle_signals=False, restart="on-failure")
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        await trio.sleep(20)
        await group.stop()
    gaps = [b - a for a, b in zip(service.setup_times, service.setup_times[1:], strict=False)]
    assert len(gaps) == 2
    assert 0.75 <= gaps[0] <= 1
    assert 1.5 <= gaps[1] <= 2
    assert service.stats.restarts == 2
    assert service.starts[0] - t0 == pytest.approx(sum(gaps))
    restarts = [m for m in caplog.messages if "restarting in" in m]
    assert len(restarts) == 2
    assert restarts[0].startswith("db failed: ConnectionError('database down'); restarting in ")


async def test_restart_intensity_is_enforced_exactly(autojump_clock: trio.testing.MockClock) -> None:
    """max_restarts=3: the fourth failure within the window is final; the group raises."""
    service = FailingSetup(100, name="db", handle_signals=False)
    other = Recorder(name="other")
    group = ServiceGroup([service, other], handle_signals=False, restart="on-failure", max_restarts=3)
    with pytest.raises(ExceptionGroup) as info:
        await group.run()
    assert len(service.setup_times) == 4
    assert service.stats.restarts == 3
    assert [type(e) for e in info.value.exceptions] == [ConnectionError]
    assert other.events[-1] == "shutdown"


async def test_failures_outside_the_window_do_not_count(autojump_clock: trio.testing.MockClock) -> None:
    """With a 1 s window every failure is alone in it: restarts go on past max_restarts."""
    service = FailingSetup(6, name="db", handle_signals=False)
    group = ServiceGroup(
        [service], handle_signals=False, restart="on-failure", max_restarts=1, restart_window_seconds=0.5
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        await trio.sleep(100)
        await group.stop()
    assert service.stats.restarts == 6
    assert service.events[:2] == ["setup", "run"]


async def test_base_exceptions_are_never_restarted(autojump_clock: trio.testing.MockClock) -> None:
    """KeyboardInterrupt in a supervised service still propagates."""
    service = Recorder(name="s")

    def interrupt(n: int) -> None:
        raise KeyboardInterrupt

    service.on_run = interrupt
    with pytest.raises(KeyboardInterrupt):
        await ServiceGroup([service], handle_signals=False, restart="on-failure").run()
    assert service.stats.restarts == 0


async def test_name_option_sets_the_logger(autojump_clock: trio.testing.MockClock) -> None:
    """name= overrides the class name, also in the logger's name."""
    service = Recorder(name="Orders-Cleanup", handle_signals=False)
    assert service.name == "Orders-Cleanup"
    assert service.logger.name == "loopsvc.services.orders-cleanup"
    assert repr(service) == "<Recorder name='Orders-Cleanup' loop_seconds=10.0 state=idle>"


def test_options_can_be_class_attributes_and_are_validated() -> None:
    """A subclass's class attributes are the defaults, validated when an instance is built."""

    class Fast(loopsvc.LoopService):
        loop_seconds = 0.5
        overrun = "skip"
        jitter = 0.2

    service = Fast()
    assert (service.loop_seconds, service.overrun, service.jitter) == (0.5, "skip", 0.2)

    class Broken(loopsvc.LoopService):
        loop_seconds = 0

    with pytest.raises(ValueError, match=r"^`loop_seconds` must be a positive finite number of seconds"):
        Broken()
