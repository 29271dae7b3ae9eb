"""ServiceGroup and run_services: one task group, one signal receiver, grace, failures."""

from __future__ import annotations

import signal

import pytest
import trio
import trio.testing

import loopsvc
from loopsvc import ServiceGroup, ServiceState

from .helpers import Recorder, offsets


class SlowSetup(Recorder):
    async def setup(self) -> None:
        await trio.sleep(self.loop_seconds / 2)
        await super().setup()


async def test_all_services_are_set_up_before_run_reports_started(autojump_clock: trio.testing.MockClock) -> None:
    """nursery.start(group.run) returns once every setup has finished (they run concurrently)."""
    t0 = trio.current_time()
    services = [SlowSetup(4, name="a"), SlowSetup(8, name="b")]
    group = ServiceGroup(services, handle_signals=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        assert trio.current_time() - t0 == 4
        assert [s.events[0] for s in services] == ["setup", "setup"]
        await trio.sleep(11)
        await group.stop()
    assert offsets(services[0].starts, t0) == [2, 6, 10, 14]
    assert offsets(services[1].starts, t0) == [4, 12]
    assert [s.events[-1] for s in services] == ["shutdown", "shutdown"]


async def test_group_schedules_on_the_shared_timer_exactly(autojump_clock: trio.testing.MockClock) -> None:
    """Services in a group keep exact slots: 0, 3, 6, ... and 0, 5, 10, ... for 30 s."""
    t0 = trio.current_time()
    a, b = Recorder(3, name="a", durations=[1] * 20), Recorder(5, name="b")
    group = ServiceGroup([a, b], handle_signals=False)
    with trio.move_on_after(30.5):
        await group.run()
    assert offsets(a.starts, t0) == [3 * k for k in range(11)]
    assert offsets(b.starts, t0) == [5 * k for k in range(7)]


async def test_stop_waits_for_runs_in_flight(autojump_clock: trio.testing.MockClock) -> None:
    """A graceful group stop lets a run in flight finish; waiting services stop at once."""
    t0 = trio.current_time()
    busy, idle = Recorder(name="busy", durations=[7]), Recorder(name="idle")
    group = ServiceGroup([busy, idle], handle_signals=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        await trio.sleep(1)
        await group.stop()
        assert trio.current_time() - t0 == 7
    assert busy.stats.successes == 1
    assert idle.state is ServiceState.STOPPED
    assert group.cancelled == ()


async def test_grace_period_bounds_the_stop_and_shutdown_still_runs(autojump_clock: trio.testing.MockClock) -> None:
    """When grace_seconds pass, the run in flight is cancelled; run() returns normally."""
    t0 = trio.current_time()
    busy = Recorder(name="busy", durations=[1000])
    group = ServiceGroup([busy], handle_signals=False, grace_seconds=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        await trio.sleep(1)
        await group.stop()
        assert trio.current_time() - t0 == 6
    assert busy.events == ["setup", "run", "shutdown"]
    assert group.cancelled == ("busy",)
    assert busy.stats.runs == 0


async def test_grace_zero_forces_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """grace_seconds=0 cancels runs in flight as soon as the stop begins."""
    busy = Recorder(name="busy", durations=[1000])
    group = ServiceGroup([busy], handle_signals=False, grace_seconds=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        t1 = trio.current_time()
        await group.stop()
        assert trio.current_time() == t1
    assert group.cancelled == ("busy",)


async def test_a_failing_service_stops_the_others_and_run_raises_a_group(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A service whose start() raises makes run() stop the rest gracefully and raise."""
    t0 = trio.current_time()

    class Broken(Recorder):
        async def setup(self) -> None:
            await trio.sleep(3)
            raise OSError("cannot connect")

    broken, busy = Broken(name="broken"), Recorder(name="busy", durations=[10])
    with pytest.raises(ExceptionGroup) as info:
        await ServiceGroup([broken, busy], handle_signals=False).run()
    assert trio.current_time() - t0 == 10  # busy's first run finished gracefully
    assert info.match(r"^1 loopsvc service failed")
    (error,) = info.value.exceptions
    assert isinstance(error, OSError)
    assert error.__notes__ == ["raised by the loopsvc service 'broken'"]
    assert busy.events == ["setup", "run", "shutdown"]


async def test_keyboard_interrupt_in_a_service_escapes_the_group_bare(autojump_clock: trio.testing.MockClock) -> None:
    """A BaseException from a service is not wrapped: it cancels the group and propagates."""
    bad, other = Recorder(name="bad"), Recorder(name="other")

    def interrupt(n: int) -> None:
        if n == 1:
            raise KeyboardInterrupt

    bad.on_run = interrupt
    with pytest.raises(KeyboardInterrupt):
        await ServiceGroup([bad, other], handle_signals=False).run()
    assert bad.events[-1] == other.events[-1] == "shutdown"


async def test_cancelling_the_group_from_outside_runs_every_shutdown(autojump_clock: trio.testing.MockClock) -> None:
    """An enclosing cancel scope cancels at once; each shutdown runs exactly once."""
    t0 = trio.current_time()
    services = [Recorder(name=f"s{i}", durations=[100]) for i in range(3)]
    with trio.move_on_after(5):
        await ServiceGroup(services, handle_signals=False).run()
    assert trio.current_time() - t0 == 5
    assert [s.events.count("shutdown") for s in services] == [1, 1, 1]


async def test_group_stops_when_every_service_has_stopped(autojump_clock: trio.testing.MockClock) -> None:
    """With loops, each service runs that many times and run() then returns."""
    t0 = trio.current_time()
    a, b = Recorder(2, name="a"), Recorder(3, name="b")
    await loopsvc.run_services([a, b], handle_signals=False, loops=3)
    assert offsets(a.starts, t0) == [0, 2, 4]
    assert offsets(b.starts, t0) == [0, 3, 6]
    assert trio.current_time() - t0 == 6


async def test_run_multiple_services_is_the_seed_name(autojump_clock: trio.testing.MockClock) -> None:
    """run_multiple_services is run_services."""
    assert loopsvc.run_multiple_services is loopsvc.run_services


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_group_stops_gracefully_on_a_signal(autojump_clock: trio.testing.MockClock, signum: int) -> None:
    """One signal receiver for the group: the first signal stops every service gracefully."""
    t0 = trio.current_time()
    services = [Recorder(name="a", durations=[4]), Recorder(name="b")]
    services[0].on_run = lambda n: signal.raise_signal(signum)
    with trio.fail_after(100):
        await ServiceGroup(services, grace_seconds=None).run()
    assert trio.current_time() - t0 == 4
    assert [s.events for s in services] == [["setup", "run", "shutdown"]] * 2
    assert services[0].stats.successes == 1


async def test_second_signal_forces_the_group_stop(autojump_clock: trio.testing.MockClock) -> None:
    """The second signal cancels the runs in flight at once; shutdown hooks still run."""
    t0 = trio.current_time()
    service = Recorder(name="busy", durations=[1000])

    async def signals(n: int) -> None:
        signal.raise_signal(signal.SIGTERM)
        await trio.sleep(2)
        signal.raise_signal(signal.SIGINT)

    service.on_run = signals
    group = ServiceGroup([service], grace_seconds=None)
    with trio.fail_after(100):
        await group.run()
    assert trio.current_time() - t0 == 2
    assert service.events == ["setup", "run", "shutdown"]
    assert group.cancelled == ("busy",)


async def test_services_in_a_group_install_no_signal_receiver(autojump_clock: trio.testing.MockClock) -> None:
    """With handle_signals=False on the group, a signal is not caught by its services."""
    service = Recorder(name="s")  # handle_signals=True on the service itself
    service.on_run = lambda n: signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        await ServiceGroup([service], handle_signals=False).run()
    assert service.events == ["setup", "run", "shutdown"]


async def test_stop_from_inside_a_service_does_not_deadlock(autojump_clock: trio.testing.MockClock) -> None:
    """group.stop() awaited inside a service's run requests the stop and returns."""
    t0 = trio.current_time()
    a, b = Recorder(name="a"), Recorder(name="b")
    group = ServiceGroup([a, b], handle_signals=False)
    a.on_run = lambda n: group.stop() if n == 1 else None
    with trio.fail_after(100):
        await group.run()
    assert trio.current_time() - t0 == 10
    assert len(a.starts) == 2


async def test_add_starts_a_service_in_a_running_group(autojump_clock: trio.testing.MockClock) -> None:
    """add() sets up and starts a service inside the running group."""
    t0 = trio.current_time()
    group = ServiceGroup([], handle_signals=False)
    late = Recorder(name="late")
    with pytest.raises(RuntimeError, match=r"^services can only be added to a running ServiceGroup"):
        group.add(late)
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        await trio.sleep(5)
        group.add(late)
        with pytest.raises(ValueError, match=r"^`services` lists <Recorder name='late'"):
            group.add(late)
        await trio.sleep(12)
        await group.stop()
    assert offsets(late.starts, t0) == [5, 15]
    assert late.events[-1] == "shutdown"
    assert [s.name for s in group.stats] == ["late"]


async def test_an_empty_group_runs_until_stopped_and_stops_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """A group with no services waits for a stop (so add() has a use), then returns at once."""
    group = ServiceGroup([], handle_signals=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        await trio.sleep(100)
        t1 = trio.current_time()
        await group.stop()
        assert trio.current_time() == t1


async def test_group_run_twice_at_once_raises(autojump_clock: trio.testing.MockClock) -> None:
    """A group runs once at a time, and not with a service that is already running."""
    service = Recorder(name="s", handle_signals=False)
    group = ServiceGroup([service], handle_signals=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        with pytest.raises(RuntimeError, match=r"^this ServiceGroup is already running$"):
            await group.run()
        with pytest.raises(RuntimeError, match=r"^s is already running$"):
            await ServiceGroup([service], handle_signals=False).run()
        group.request_stop()
    await group.stop()  # not running: returns at once


@pytest.mark.parametrize(
    ("services", "error", "message"),
    [
        ("abc", TypeError, r"^`services` must be an iterable of LoopService instances, got 'abc'$"),
        (3, TypeError, r"^`services` must be an iterable of LoopService instances, got 3$"),
        ([object], TypeError, r"^`services` must hold LoopService instances, got <class 'object'>$"),
        ([Recorder(name="x"), Recorder(name="x")], ValueError, r"^`services` has two services named 'x'"),
    ],
)
def test_group_rejects_bad_services(services: object, error: type[Exception], message: str) -> None:
    """services must be LoopService instances with distinct names."""
    with pytest.raises(error, match=message):
        ServiceGroup(services)  # type: ignore[arg-type]
