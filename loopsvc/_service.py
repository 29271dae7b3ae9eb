# LoopService: one periodic routine, its options, its lifecycle and its stop.
#
# Why the schedule counts from the previous *slot*: a run that takes 4 s of a 10 s interval
# is followed by a 6 s wait, so runs start at 0, 10, 20, ... with no drift, and jitter (an
# offset from each slot) never accumulates. The arithmetic lives in `_schedule`.
#
# Why stop is an alarm and a cancel scope, not a flag: a service that waits for its next slot
# waits inside a timer (`_timer`) that `request_stop()` and `run_now()` wake at once, so a stop
# takes no time, not up to a polling period. A run in flight is never interrupted by a
# graceful stop; a *forced* stop (a ServiceGroup's grace period ending, a second signal)
# cancels the one scope that encloses setup and the loop. `shutdown()` runs after that scope,
# shielded and bounded, so it runs exactly once per start that got past `setup()`, also after
# an error or a cancellation.
from __future__ import annotations

import contextvars
import datetime
import inspect
import logging
import math
import random
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import anyio
import anyio.lowlevel
import pendulum

from . import _validate
from ._schedule import OVERRUN_POLICIES, Overrun, interval, jitter_offset, phase, plan_next
from ._signals import can_handle_signals, watch_signals
from ._stats import CurrentRun, Outcome, RunRecord, ServiceState, ServiceStats
from ._tasks import open_task_group
from ._timer import Alarm, SoloTimer, Timer, loop_clock

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskStatus

# The service whose task (or a child of it) is running: `stop()` awaited from inside a
# service must not wait for itself.
current_service: contextvars.ContextVar[LoopService | None] = contextvars.ContextVar(
    "loopsvc_current_service", default=None
)


class _Unset:
    """The default of an option that is not given: the class attribute stands."""

    def __repr__(self) -> str:
        return "<class default>"


UNSET: Final = _Unset()
_HEALTHY_INTERVALS = 3


class _Config(NamedTuple):
    period: float
    overrun: Overrun
    jitter: float
    first_slot_after: float
    run_timeout: float | None
    backoff_max: float | None
    shutdown_timeout: float


def safe_repr(value: object) -> str:
    """`repr(value)`, even when the value's own `__repr__` is broken (user exceptions)."""
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 (a broken __repr__ may raise anything)
        return f"<{type(value).__name__} (repr() failed)>"


class LoopService:
    """A routine that runs periodically until it is stopped.

    Subclass it, write `async def run_once()`, and call `start()`. The first run starts at
    once (after `first_run_after`, the `spread` phase and jitter). Each later run starts
    `loop_seconds` after the previous run *was due to start*, on the event loop's clock: a run
    that takes 4 s of a 10 s interval is followed by a 6 s wait. When a run overruns, the
    `overrun` policy decides: "delay" starts the next run at once and re-anchors the
    schedule there; "skip" keeps the grid and starts at the next grid point still ahead.

    Every option is a class attribute with the default shown, and can be given to `__init__`
    under the same name (keyword-only), where it is validated.

    Args:
        loop_seconds: The interval, in seconds or as a timedelta (pendulum durations work).
        handle_signals: Stop gracefully on SIGINT/SIGTERM when started on its own in the main
            thread (a second signal forces the stop). Inside a ServiceGroup the group handles
            signals instead.
        name: Overrides the class name, to tell instances apart (also in the logger's name).
        overrun: "delay" or "skip", what to do after a run that took longer than its interval.
        jitter: A fraction in [0, 1): each run starts a random `U[0, jitter * loop_seconds)`
            after its slot.
        spread: Shift the whole schedule by a stable phase in `[0, loop_seconds)` derived from
            the name, so many services with one interval do not fire together.
        first_run_after: Seconds before the first slot (added to the phase).
        run_timeout_seconds: Cancel a run that takes longer; it counts as a timeout.
        backoff_max_seconds: After k consecutive failed runs wait
            `min(loop_seconds * 2**k, backoff_max_seconds)` instead of `loop_seconds`.
        shutdown_timeout_seconds: Bound on `shutdown()`; a hung shutdown is cancelled.
        seed: Seeds the service's own random generator (jitter, restart backoff), so a
            jittered schedule is reproducible.

    Raises:
        TypeError: An option has the wrong type.
        ValueError: An option has a bad value (the message names it and shows the value).
    """

    # Internal state lives in slots: compact and quick to reach with thousands of services.
    # `__dict__` stays, for the options and for subclasses' own attributes.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_alarm",
        "_clock",
        "_clock_zero",
        "_config",
        "_consecutive_failures",
        "_failures",
        "_force_scope",
        "_last_duration",
        "_last_error",
        "_last_run_started",
        "_last_success",
        "_next_run",
        "_observer",
        "_overruns",
        "_ready",
        "_restarts",
        "_rng",
        "_run_info",
        "_run_now",
        "_running",
        "_runs",
        "_seed",
        "_skipped",
        "_started",
        "_state",
        "_stop_requested",
        "_stopped",
        "_successes",
        "_timeouts",
        "_wall_zero",
    )

    loop_seconds: float = 60
    overrun: Overrun = "delay"
    jitter: float = 0.0
    spread: bool = False
    first_run_after: float = 0.0
    run_timeout_seconds: float | None = None
    backoff_max_seconds: float | None = None
    shutdown_timeout_seconds: float = 30.0

    def __init__(  # noqa: PLR0913 (every option is a keyword, as documented)
        self,
        loop_seconds: float | datetime.timedelta | None = None,
        handle_signals: bool = True,  # noqa: FBT001, FBT002 (the seed's positional signature)
        *,
        name: str | None = None,
        overrun: Overrun | _Unset = UNSET,
        jitter: float | _Unset = UNSET,
        spread: bool | _Unset = UNSET,
        first_run_after: float | datetime.timedelta | _Unset = UNSET,
        run_timeout_seconds: float | datetime.timedelta | _Unset | None = UNSET,
        backoff_max_seconds: float | datetime.timedelta | _Unset | None = UNSET,
        shutdown_timeout_seconds: float | datetime.timedelta | _Unset = UNSET,
        seed: int | None = None,
    ) -> None:
        given: dict[str, Any] = {
            "loop_seconds": UNSET if loop_seconds is None else loop_seconds,
            "overrun": overrun,
            "jitter": jitter,
            "spread": spread,
            "first_run_after": first_run_after,
            "run_timeout_seconds": run_timeout_seconds,
            "backoff_max_seconds": backoff_max_seconds,
            "shutdown_timeout_seconds": shutdown_timeout_seconds,
        }
        for option, value in given.items():
            if value is not UNSET:
                setattr(self, option, value)
        self.handle_signals = _validate.boolean("handle_signals", handle_signals)
        self.name: str = type(self).__name__ if name is None else _validate.text("name", name)
        self.logger = logging.getLogger(f"loopsvc.services.{self.name.lower()}")
        if seed is not None:
            _validate.integer("seed", seed, minimum=-(2**63))
        self._seed = seed
        self._rng: random.Random | None = None  # made when first needed: it weighs 2.5 KB
        self._config = self._read_config()
        self.loop_seconds = self._config.period

        self._alarm = Alarm()
        self._running = False
        self._stop_requested = False
        self._run_now = False
        self._stopped: anyio.Event | None = None
        self._force_scope: anyio.CancelScope | None = None
        self._state = ServiceState.IDLE
        self._runs = self._successes = self._failures = self._timeouts = 0
        self._overruns = self._skipped = self._consecutive_failures = self._restarts = 0
        self._last_error: str | None = None
        self._last_duration: float | None = None
        # Loop-clock times; `_wall_zero` and `_clock_zero` turn them into UTC for people.
        self._wall_zero = pendulum.now("UTC")
        self._clock_zero = 0.0
        self._started: float | None = None
        self._ready: float | None = None
        self._last_run_started: float | None = None
        self._last_success: float | None = None
        self._next_run: float | None = None
        self._run_info: tuple[int, float, float, int] | None = None
        # Called with every finished or cancelled run (loopsvc.testing uses it).
        self._observer: Callable[[RunRecord], object] | None = None
        self._clock: Callable[[], float] = anyio.current_time

    def _random(self) -> random.Random:
        """The service's own generator (jitter, restart backoff), seeded by `seed=`."""
        if self._rng is None:
            self._rng = random.Random(self._seed)  # noqa: S311 (scheduling jitter, not cryptography)
        return self._rng

    def _read_config(self) -> _Config:
        """Validate the options as they stand on the instance (or its class)."""
        period = _validate.seconds("loop_seconds", self.loop_seconds)
        spread = _validate.boolean("spread", self.spread)
        first = _validate.seconds("first_run_after", self.first_run_after, allow_zero=True)
        return _Config(
            period=period,
            overrun=_validate.choice("overrun", self.overrun, OVERRUN_POLICIES),
            jitter=_validate.fraction("jitter", self.jitter),
            first_slot_after=first + (phase(self.name, period) if spread else 0.0),
            run_timeout=_validate.optional_seconds("run_timeout_seconds", self.run_timeout_seconds),
            backoff_max=_validate.optional_seconds("backoff_max_seconds", self.backoff_max_seconds),
            shutdown_timeout=_validate.seconds("shutdown_timeout_seconds", self.shutdown_timeout_seconds),
        )

    def __repr__(self) -> str:
        state = getattr(self, "_state", ServiceState.IDLE).value
        return f"<{type(self).__name__} name={self.name!r} loop_seconds={self.loop_seconds!r} state={state}>"

    # Hooks for subclasses.

    async def setup(self) -> None:
        """Runs once before the first run of every `start()`. An error stops the start."""

    async def shutdown(self) -> None:
        """Runs once after the last run of every start that got past `setup()`.

        Also after an error or a cancellation; it is then shielded from the cancellation and
        bounded by `shutdown_timeout_seconds`.
        """

    async def run_once(self) -> None:
        """One run of the routine. Subclasses must override it."""
        msg = f"{type(self).__name__} must implement `async def run_once(self)`"
        raise NotImplementedError(msg)

    # Control.

    async def start(
        self,
        loops: int | None = None,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Set up, run until stopped (or `loops` times), then shut down.

        With `await nursery.start(service.start)` this returns once `setup()` has finished
        and the first run is scheduled. `start(loops=N)` returns right after the N-th run.
        An Exception from `run_once()` is logged and the loop goes on; NotImplementedError,
        errors from `setup()`/`shutdown()` and every BaseException propagate, bare.

        Raises:
            RuntimeError: The service is already running.
            TypeError: A hook is not an `async def`, or `__init__` skipped `super().__init__()`.
            ValueError: `loops` is not None or an int >= 1.
        """
        await self._start(loops, SoloTimer(), own_signals=True, on_started=task_status.started)

    def request_stop(self) -> None:
        """Ask the service to stop gracefully; idempotent, returns at once.

        A waiting service stops at once; a run in flight finishes first. No effect on a service
        that is not running.
        """
        if self._running and not self._stop_requested:
            self._stop_requested = True
            self._alarm.ring()

    async def stop(self) -> None:
        """Request a graceful stop and wait until `start()` has finished.

        Returns at once when the service is not running, and when awaited from inside the
        service itself (its hooks or `run_once()`), where waiting would deadlock.
        """
        if not self._running:
            return
        self.request_stop()
        if current_service.get() is not self:
            if self._stopped is None:  # made on demand: most services are never awaited
                self._stopped = anyio.Event()
            await self._stopped.wait()

    def run_now(self) -> None:
        """Run as soon as possible: at once if waiting, right after the run in flight if not.

        Requests made before the run starts coalesce into one. The schedule continues from
        that run by the overrun policy ("delay" re-anchors there, "skip" keeps its grid).
        """
        if self._running and not self._stop_requested:
            self._run_now = True
            self._alarm.ring()

    # Status.

    @property
    def state(self) -> ServiceState:
        return self._state

    @property
    def current_run(self) -> CurrentRun | None:
        """The run in flight, or None."""
        info = self._run_info
        if info is None or self._state is not ServiceState.RUNNING:
            return None
        iteration, scheduled, started, skipped = info
        return CurrentRun(iteration, scheduled, started, started - scheduled, skipped)

    @property
    def stats(self) -> ServiceStats:
        """A frozen snapshot of the service's state and counters."""
        return ServiceStats(
            name=self.name,
            state=self._state,
            runs=self._runs,
            successes=self._successes,
            failures=self._failures,
            timeouts=self._timeouts,
            overruns=self._overruns,
            skipped=self._skipped,
            consecutive_failures=self._consecutive_failures,
            restarts=self._restarts,
            last_error=self._last_error,
            last_duration_seconds=self._last_duration,
            started_at=self._wall(self._started),
            last_run_started_at=self._wall(self._last_run_started),
            last_success_at=self._wall(self._last_success),
            next_run_at=self._wall(self._next_run),
            healthy=self._healthy(),
        )

    def _wall(self, t: float | None) -> pendulum.DateTime | None:
        if t is None:
            return None
        return self._wall_zero + datetime.timedelta(seconds=t - self._clock_zero)

    def _healthy(self) -> bool:
        if self._state not in {ServiceState.WAITING, ServiceState.RUNNING} or self._ready is None:
            return False
        try:
            now = anyio.current_time()
        except RuntimeError:  # read from outside the event loop
            return False
        config = self._config
        since = max(self._ready, -math.inf if self._last_success is None else self._last_success)
        window = config.first_slot_after if self._last_success is None else 0.0
        allowed = interval(config.period, self._consecutive_failures, config.backoff_max)
        return now - since <= _HEALTHY_INTERVALS * allowed + window

    # The lifecycle.

    def _check_startable(self) -> None:
        if not hasattr(self, "_alarm"):
            msg = f"{type(self).__name__}.__init__() must call super().__init__()"
            raise TypeError(msg)
        for hook in ("setup", "run_once", "shutdown"):
            function = getattr(self, hook)
            if not inspect.iscoroutinefunction(function):
                msg = f"{type(self).__name__}.{hook}() must be an async function (`async def`), got {function!r}"
                raise TypeError(msg)
        if self._running:
            msg = f"{self.name} is already running"
            raise RuntimeError(msg)

    async def _start(
        self,
        loops: int | None,
        timer: Timer,
        *,
        own_signals: bool,
        on_started: Callable[[], object],
    ) -> None:
        """`start()`, with the timer chosen by the caller; `own_signals`: it may handle signals."""
        loops = _validate.optional_integer("loops", loops, minimum=1)
        self._check_startable()
        signals = own_signals and self.handle_signals and can_handle_signals()
        config = self._config = self._read_config()
        self._running = True
        self._stop_requested = self._run_now = False
        self._consecutive_failures = 0
        self._wall_zero, self._clock_zero = pendulum.now("UTC"), anyio.current_time()
        self._started, self._ready = self._clock_zero, None
        token = current_service.set(self)
        try:
            if signals:
                async with open_task_group() as task_group:
                    await task_group.start(watch_signals, self.request_stop, self._force_stop, self.logger)
                    await self._lifecycle(loops, timer, config, on_started)
                    task_group.cancel_scope.cancel()
            else:
                await self._lifecycle(loops, timer, config, on_started)
        finally:
            current_service.reset(token)
            self._running = False
            self._state = ServiceState.STOPPED
            self._next_run = self._run_info = None
            if self._stopped is not None:
                self._stopped.set()
                self._stopped = None

    async def _lifecycle(
        self,
        loops: int | None,
        timer: Timer,
        config: _Config,
        on_started: Callable[[], object],
    ) -> None:
        set_up = False
        try:
            with anyio.CancelScope() as self._force_scope:
                self._state = ServiceState.STARTING
                await self.setup()
                set_up = True
                self._ready = anyio.current_time()
                on_started()
                await self._loop(loops, timer, config)
        except BaseException:
            if set_up:
                await self._shutdown(config, raise_errors=False)
            raise
        else:
            if set_up:
                await self._shutdown(config, raise_errors=True)
        finally:
            self._force_scope = None

    def _force_stop(self) -> bool:
        """Cancel setup or the run in flight; `shutdown()` still runs.

        Returns whether something in flight (setup or a run) was cancelled.
        """
        self.request_stop()
        scope = self._force_scope
        if scope is None:
            return False
        busy = self._state in {ServiceState.STARTING, ServiceState.RUNNING}
        if busy:
            what = "setup" if self._state is ServiceState.STARTING else "the run in flight"
            self.logger.warning("%s: forced stop: cancelling %s", self.name, what)
        scope.cancel()
        return busy

    async def _shutdown(self, config: _Config, *, raise_errors: bool) -> None:
        self._state = ServiceState.STOPPING
        with anyio.CancelScope(shield=True), anyio.move_on_after(config.shutdown_timeout) as bound:
            try:
                await self.shutdown()
            except Exception:
                if raise_errors:
                    raise
                self.logger.exception("%s: shutdown() failed", self.name)
        if bound.cancelled_caught:
            self.logger.error(
                "%s: shutdown() did not finish within %g seconds and was cancelled",
                self.name,
                config.shutdown_timeout,
            )

    async def _loop(self, loops: int | None, timer: Timer, config: _Config) -> None:
        # The hot path of every service: it reads the clock twice per run (on waking, and when
        # the run ends) and keeps what it uses in locals.
        clock = self._clock = loop_clock()
        wait, alarm, logger = timer.wait_until, self._alarm, self.logger
        period, policy, jitter, backoff_max = config.period, config.overrun, config.jitter, config.backoff_max
        rng = self._random() if jitter else None
        now = clock()
        origin = slot = now + config.first_slot_after
        start_at = scheduled = slot + jitter_offset(jitter, period, rng)
        skipped = iteration = 0
        while not self._stop_requested:
            if not self._run_now and start_at > now:
                self._state = ServiceState.WAITING
                self._next_run = start_at
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("%s: next run at %s", self.name, self._wall(start_at))
                await wait(start_at, alarm)
                now = clock()
                continue
            extra = self._run_now and now < start_at
            self._run_now = False
            self._next_run = None
            iteration += 1
            if extra and policy == "delay":
                slot = now
            duration = await self._run(iteration, now if extra else scheduled, now, 0 if extra else skipped, config)
            now += duration
            overran = duration > period
            self._overruns += overran
            if iteration == loops or self._stop_requested:
                return
            due = slot
            if not (extra and policy == "skip"):
                due += interval(period, self._consecutive_failures, backoff_max)
            plan = plan_next(policy, due=due, now=now, origin=origin, period=period)
            slot, skipped = plan.slot, plan.skipped
            self._skipped += skipped
            start_at = slot if plan.late else slot + jitter_offset(jitter, period, rng)
            scheduled = due if plan.late else start_at
            if overran:
                self._warn_overrun(duration, period, plan.late, skipped)
            if start_at <= now:  # no wait ahead: let other tasks run (and cancellation in)
                await anyio.lowlevel.checkpoint()

    def _warn_overrun(self, duration: float, period: float, late: bool, skipped: int) -> None:  # noqa: FBT001
        if late:
            then = "the next run starts at once"
        elif skipped:
            then = f"skipping {skipped} slot{'s' if skipped != 1 else ''}"
        else:
            then = "the next run keeps its slot"
        self.logger.warning(
            "%s took %.3f seconds to run, which is longer than its loop interval of %g seconds; %s",
            self.name,
            duration,
            period,
            then,
        )

    async def _run(self, iteration: int, scheduled: float, started: float, skipped: int, config: _Config) -> float:
        """One run: call `run_once()`, classify the outcome, count it. Returns its duration."""
        self._state = ServiceState.RUNNING
        self._run_info = info = (iteration, scheduled, started, skipped)
        self._last_run_started = started
        outcome: Outcome = "ok"
        error: BaseException | None = None
        try:
            if config.run_timeout is None:
                await self.run_once()
            else:
                with anyio.move_on_after(config.run_timeout) as bound:
                    await self.run_once()
                if bound.cancelled_caught:
                    outcome = "timeout"
                    error = TimeoutError(f"run timed out after {config.run_timeout:g} seconds")
        except NotImplementedError as raised:
            self._finish_run(info, "error", raised)
            raise
        except Exception as raised:  # noqa: BLE001 (a failed run is logged and the loop goes on)
            outcome, error = "error", raised
        except BaseException as raised:
            cancelled = isinstance(raised, anyio.get_cancelled_exc_class())
            self._finish_run(info, "cancelled" if cancelled else "error", raised, count=False)
            raise
        finally:
            self._run_info = None
        duration = self._finish_run(info, outcome, error)
        if outcome == "error":
            self.logger.error("%s: run %d failed: %s", self.name, iteration, self._last_error, exc_info=error)
        elif outcome == "timeout":
            self.logger.error(
                "%s: run %d timed out after %g seconds and was cancelled", self.name, iteration, config.run_timeout
            )
        return duration

    def _finish_run(
        self,
        info: tuple[int, float, float, int],
        outcome: Outcome,
        error: BaseException | None,
        *,
        count: bool = True,
    ) -> float:
        """Count a run that ended and report it to the observer; returns its duration.

        A run ended by a BaseException (a cancellation, KeyboardInterrupt) is not counted: it
        did not finish, and `runs` stays `successes + failures + timeouts`.
        """
        iteration, scheduled, started, skipped = info
        now = self._clock()
        duration = now - started
        if self._observer is not None:
            self._observer(RunRecord(self.name, iteration, scheduled, started, duration, outcome, error, skipped))
        if not count:
            return duration
        self._runs += 1
        self._last_duration = duration
        self._last_error = None if error is None else safe_repr(error)
        if outcome == "ok":
            self._successes += 1
            self._consecutive_failures = 0
            self._last_success = now
            return duration
        self._consecutive_failures += 1
        if outcome == "timeout":
            self._timeouts += 1
        else:
            self._failures += 1
        return duration
