"""LoopService on its own: schedule, loops, hooks, errors, stop, cancellation, signals."""

from __future__ import annotations

import datetime
import logging
import signal

import anyio
import pendulum
import pytest
import trio
import trio.testing

import loopsvc
from loopsvc import ServiceState

from .helpers import Recorder, offsets


async def test_runs_start_on_the_interval_counted_from_the_previous_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A 4 s run of a 10 s interval is followed by a 6 s wait: starts at 0, 10, 20."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, durations=[4, 4, 4])
    await service.start(loops=3)
    assert offsets(service.starts, t0) == [0, 10, 20]
    assert trio.current_time() - t0 == 24  # returns right after the last run


async def test_loop_seconds_accepts_a_timedelta_or_pendulum_duration(autojump_clock: trio.testing.MockClock) -> None:
    """`loop_seconds` may be a timedelta, including pendulum's Duration."""
    t0 = trio.current_time()
    service = Recorder(datetime.timedelta(seconds=3), handle_signals=False)
    await service.start(loops=2)
    other = Recorder(pendulum.duration(minutes=1), handle_signals=False)
    await other.start(loops=2)
    assert offsets(service.starts, t0) == [0, 3]
    assert offsets(other.starts, t0) == [3, 63]
    assert other.loop_seconds == 60.0


async def test_overrun_warns_and_starts_the_next_run_at_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A 15 s run of a 10 s interval: warning, next run at once, schedule re-anchored there."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, durations=[15, 1, 1])
    await service.start(loops=3)
    assert offsets(service.starts, t0) == [0, 15, 25]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name == "loopsvc.services.recorder"
    assert warnings[0].getMessage() == (
        "Recorder took 15.000 seconds to run, which is longer than its loop interval of 10 seconds; "
        "the next run starts at once"
    )
    assert service.stats.overruns == 1


async def test_a_run_of_exactly_the_interval_is_not_an_overrun(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A run that takes exactly loop_seconds is followed at once, without a warning."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, durations=[10, 0])
    await service.start(loops=2)
    assert offsets(service.starts, t0) == [0, 10]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_loops_runs_exactly_n_times_and_service_restarts(autojump_clock: trio.testing.MockClock) -> None:
    """start(loops=N) runs N times; a stopped service can be started again."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False)
    await service.start(loops=1)
    assert service.state is ServiceState.STOPPED
    await service.start(loops=2)
    assert offsets(service.starts, t0) == [0, 0, 10]
    assert service.events == ["setup", "run", "shutdown", "setup", "run", "run", "shutdown"]
    assert service.stats.runs == 3


async def test_start_while_running_raises(autojump_clock: trio.testing.MockClock) -> None:
    """A second start() of a running service raises RuntimeError."""
    service = Recorder(handle_signals=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.start)
        with pytest.raises(RuntimeError, match=r"^Recorder is already running$"):
            await service.start()
        service.request_stop()


async def test_nursery_start_returns_after_setup(autojump_clock: trio.testing.MockClock) -> None:
    """nursery.start(service.start) returns once setup has finished, before any run."""
    t0 = trio.current_time()

    class SlowSetup(Recorder):
        async def setup(self) -> None:
            await trio.sleep(5)
            await super().setup()

    service = SlowSetup(handle_signals=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.start)
        assert trio.current_time() - t0 == 5
        assert service.events[0] == "setup"
        await trio.testing.wait_all_tasks_blocked()
        assert offsets(service.starts, t0) == [5]
        assert service.state is ServiceState.WAITING
        await service.stop()
    assert service.events == ["setup", "run", "shutdown"]


async def test_run_error_is_logged_with_traceback_and_the_loop_goes_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An Exception from run_once is logged at ERROR with exc_info; the next run happens."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, fail_on=[0])
    await service.start(loops=2)
    assert offsets(service.starts, t0) == [0, 10]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].getMessage() == "Recorder: run 1 failed: ValueError('run 0 failed')"
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], ValueError)
    stats = service.stats
    assert (stats.runs, stats.successes, stats.failures) == (2, 1, 1)
    assert stats.last_error is None
    assert stats.consecutive_failures == 0


async def test_not_implemented_run_once_propagates_bare_after_shutdown(autojump_clock: trio.testing.MockClock) -> None:
    """The base run_once raises NotImplementedError, which leaves start() bare."""

    class Bare(loopsvc.LoopService):
        def __init__(self) -> None:
            super().__init__(handle_signals=False)
            self.shut = 0

        async def shutdown(self) -> None:
            self.shut += 1

    service = Bare()
    with pytest.raises(NotImplementedError, match=r"^Bare must implement `async def run_once\(self\)`$"):
        await service.start()
    assert service.shut == 1


async def test_setup_error_propagates_and_nothing_runs(autojump_clock: trio.testing.MockClock) -> None:
    """An error in setup() propagates bare; no run, no shutdown."""

    class BadSetup(Recorder):
        async def setup(self) -> None:
            raise OSError("no database")

    service = BadSetup(handle_signals=False)
    with pytest.raises(OSError, match=r"^no database$"):
        await service.start()
    assert service.events == []
    assert service.state is ServiceState.STOPPED


async def test_shutdown_error_propagates_after_a_clean_loop(autojump_clock: trio.testing.MockClock) -> None:
    """An error in shutdown() after a clean loop leaves start() bare."""

    class BadShutdown(Recorder):
        async def shutdown(self) -> None:
            raise OSError("flush failed")

    with pytest.raises(OSError, match=r"^flush failed$"):
        await BadShutdown(handle_signals=False).start(loops=1)


async def test_keyboard_interrupt_from_a_run_propagates_and_shutdown_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """BaseException from run_once is never swallowed; shutdown still runs once."""
    service = Recorder(handle_signals=False)

    def interrupt(n: int) -> None:
        raise KeyboardInterrupt

    service.on_run = interrupt
    with pytest.raises(KeyboardInterrupt):
        await service.start()
    assert service.events == ["setup", "run", "shutdown"]
    assert service.stats.runs == 0


async def test_stop_while_waiting_is_immediate(autojump_clock: trio.testing.MockClock) -> None:
    """A stop request during the wait ends it at once: zero virtual time."""
    service = Recorder(handle_signals=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.start)
        await trio.sleep(3)
        before = trio.current_time()
        await service.stop()
        assert trio.current_time() == before
    assert service.events == ["setup", "run", "shutdown"]


async def test_stop_during_a_run_lets_it_finish(autojump_clock: trio.testing.MockClock) -> None:
    """request_stop during a 4 s run: the run finishes, shutdown runs, start() returns at 4."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, durations=[4])
    async with trio.open_nursery() as nursery:
        await nursery.start(service.start)
        await trio.sleep(1)
        assert service.state is ServiceState.RUNNING
        await service.stop()
        assert trio.current_time() - t0 == 4
    assert service.events == ["setup", "run", "shutdown"]
    assert service.stats.successes == 1


async def test_stop_awaited_inside_run_once_does_not_deadlock(autojump_clock: trio.testing.MockClock) -> None:
    """await self.stop() inside run_once requests the stop and returns; the loop then ends."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False)
    service.on_run = lambda n: service.stop() if n == 2 else None
    with trio.fail_after(100):
        await service.start()
    assert offsets(service.starts, t0) == [0, 10, 20]
    assert service.events[-1] == "shutdown"


async def test_stop_when_not_running_returns_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """stop() and request_stop() on a service that is not running do nothing."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False)
    service.request_stop()
    await service.stop()
    assert trio.current_time() == t0
    await service.start(loops=1)  # an earlier request does not leak into a later start
    assert len(service.starts) == 1


async def test_request_stop_is_idempotent(autojump_clock: trio.testing.MockClock) -> None:
    """Several requests are one stop."""
    service = Recorder(handle_signals=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.start)
        service.request_stop()
        service.request_stop()
    assert service.events == ["setup", "run", "shutdown"]


async def test_cancellation_cancels_the_run_and_runs_shutdown(autojump_clock: trio.testing.MockClock) -> None:
    """An enclosing cancel scope cancels a run in flight at once; shutdown still runs."""
    t0 = trio.current_time()
    service = Recorder(handle_signals=False, durations=[100])
    with trio.move_on_after(3):
        await service.start()
    assert trio.current_time() - t0 == 3
    assert service.events == ["setup", "run", "shutdown"]
    assert service.stats.runs == 0
    assert service.state is ServiceState.STOPPED


async def test_shutdown_after_cancellation_is_shielded(autojump_clock: trio.testing.MockClock) -> None:
    """A shutdown that awaits still completes after an outer cancellation."""
    t0 = trio.current_time()

    class SlowShutdown(Recorder):
        async def shutdown(self) -> None:
            await trio.sleep(2)
            await super().shutdown()

    service = SlowShutdown(handle_signals=False)
    with trio.move_on_after(1):
        await service.start()
    assert trio.current_time() - t0 == 3
    assert service.events[-1] == "shutdown"


async def test_hung_shutdown_is_bounded_by_its_timeout(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A shutdown that hangs is cancelled after shutdown_timeout_seconds and logged."""
    t0 = trio.current_time()

    class Hangs(Recorder):
        async def shutdown(self) -> None:
            await trio.sleep_forever()

    service = Hangs(handle_signals=False, shutdown_timeout_seconds=7)
    await service.start(loops=1)
    assert trio.current_time() - t0 == 7
    assert service.state is ServiceState.STOPPED
    assert "Hangs: shutdown() did not finish within 7 seconds and was cancelled" in caplog.messages


async def test_debug_line_gives_the_next_run_in_utc(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG the service logs when its next run is, as a UTC time."""
    caplog.set_level(logging.DEBUG, logger="loopsvc")
    await Recorder(handle_signals=False).start(loops=2)
    lines = [m for m in caplog.messages if m.startswith("Recorder: next run at ")]
    assert len(lines) == 1
    assert lines[0].endswith("+00:00")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_lone_service_stops_gracefully_on_a_signal(
    autojump_clock: trio.testing.MockClock, signum: signal.Signals
) -> None:
    """With handle_signals, SIGINT or SIGTERM during a run lets it finish, then stops."""
    t0 = trio.current_time()
    service = Recorder(durations=[5])
    service.on_run = lambda n: signal.raise_signal(signum)
    with trio.fail_after(100):
        await service.start()
    assert trio.current_time() - t0 == 5
    assert service.events == ["setup", "run", "shutdown"]


async def test_a_second_signal_forces_a_lone_service_to_stop(autojump_clock: trio.testing.MockClock) -> None:
    """The second signal cancels the run in flight; shutdown still runs."""
    t0 = trio.current_time()
    service = Recorder(durations=[50])

    async def two_signals(n: int) -> None:
        signal.raise_signal(signal.SIGINT)
        await trio.sleep(1)
        signal.raise_signal(signal.SIGTERM)

    service.on_run = two_signals
    with trio.fail_after(100):
        await service.start()
    assert trio.current_time() - t0 == 1
    assert service.events == ["setup", "run", "shutdown"]
    assert service.stats.runs == 0


async def test_no_signal_handler_off_the_main_thread() -> None:
    """Started in another thread, a service installs no signal receiver and still runs."""
    service = Recorder(loop_seconds=0.01)
    done = await trio.to_thread.run_sync(lambda: trio.run(service.start, 2))
    assert done is None
    assert len(service.starts) == 2


def test_runs_on_asyncio_too() -> None:
    """The same service runs under asyncio through anyio, on the real clock."""
    service = Recorder(0.05, handle_signals=False, durations=[0.01, 0.01, 0.01])

    async def main() -> float:
        t0 = anyio.current_time()
        async with anyio.create_task_group() as tg:
            await tg.start(service.start)
            await anyio.sleep(0.12)
            await service.stop()
        return t0

    t0 = anyio.run(main, backend="asyncio")
    starts = offsets(service.starts, t0)
    assert len(starts) == 3
    assert starts[0] < 0.05
    assert starts[1] - starts[0] == pytest.approx(0.05, abs=0.03)
    assert service.events == ["setup", "run", "run", "run", "shutdown"]
