# ServiceGroup: many services in one task group, under one signal handler and one timer.
#
# The group owns everything its services share: the task group they run in, the shared timer
# they wait on (one deadline heap, one sleeping task), the signal receiver, the grace period
# and supervision. A stop goes in two steps. Graceful: every service is asked to stop, runs in
# flight finish, shutdown hooks run. Forced, when the grace period ends or a second signal
# arrives: the runs still in flight are cancelled, and the shutdown hooks still run. Either
# way `run()` then returns normally; it raises only for services that *failed*, as one
# ExceptionGroup, after the others were stopped gracefully.
from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import anyio

from . import _validate
from ._schedule import restart_delay
from ._service import LoopService, current_service, safe_repr
from ._signals import can_handle_signals, watch_signals
from ._tasks import open_task_group
from ._timer import SharedTimer

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskGroup, TaskStatus

    from ._stats import ServiceStats

Restart = Literal["never", "on-failure"]
RESTART_POLICIES: tuple[Restart, ...] = ("never", "on-failure")

logger = logging.getLogger("loopsvc.group")


def _noop() -> None:
    pass


class ServiceGroup:
    """Run many services together until stopped.

    `run()` sets up every service (concurrently), reports started once all are set up, and
    returns when the group is stopped: by `request_stop()`/`stop()`, by SIGINT/SIGTERM (with
    `handle_signals`), or when every service has stopped on its own. A stop is graceful; when
    `grace_seconds` pass, or on a second signal, the runs still in flight are cancelled.

    Args:
        services: The services; each may belong to one running group at a time, and their
            names must differ (give `name=` to tell instances of one class apart).
        handle_signals: Install one SIGINT/SIGTERM receiver for the group (main thread only).
        grace_seconds: How long a graceful stop may take before runs are cancelled; None waits
            for ever.
        restart: "on-failure" restarts a service whose `start()` raised an Exception, after a
            backoff that doubles from 1 s up to 60 s (jittered).
        max_restarts: More failures than this within `restart_window_seconds` make the failure
            final: the group stops the rest and raises.
        restart_window_seconds: The window in which failures are counted.
        loops: Run each service this many times, then let it stop (None: until stopped).

    Raises:
        TypeError: `services` holds something that is not a LoopService, or an option has
            the wrong type.
        ValueError: A service is listed twice, two share a name, or an option is out of range.
    """

    def __init__(  # noqa: PLR0913 (every option is a keyword, as documented)
        self,
        services: Iterable[LoopService],
        *,
        handle_signals: bool = True,
        grace_seconds: float | None = 30.0,
        restart: Restart = "never",
        max_restarts: int = 5,
        restart_window_seconds: float = 60.0,
        loops: int | None = None,
    ) -> None:
        if isinstance(services, str | bytes) or not isinstance(services, Iterable):
            msg = f"`services` must be an iterable of LoopService instances, got {services!r}"
            raise TypeError(msg)
        self._services: list[LoopService] = []
        self._names: set[str] = set()
        for service in services:
            self._append(service)
        self.handle_signals = _validate.boolean("handle_signals", handle_signals)
        self.grace_seconds = _validate.optional_seconds("grace_seconds", grace_seconds, allow_zero=True)
        self.restart: Restart = _validate.choice("restart", restart, RESTART_POLICIES)
        self.max_restarts = _validate.integer("max_restarts", max_restarts, minimum=0)
        self.restart_window_seconds = _validate.seconds("restart_window_seconds", restart_window_seconds)
        self.loops = _validate.optional_integer("loops", loops, minimum=1)
        self._running = False
        self._stop_requested = False
        self._stop_event: anyio.Event | None = None
        self._all_stopped: anyio.Event | None = None
        self._finished: anyio.Event | None = None
        self._setups_done: anyio.Event | None = None
        self._task_group: TaskGroup | None = None
        self._timer: SharedTimer | None = None
        self._active = 0
        self._failures: list[Exception] = []
        self._cancelled: list[str] = []

    def _append(self, service: object) -> None:
        """Check a new member and add it (names are unique, so are instances)."""
        if not isinstance(service, LoopService):
            msg = f"`services` must hold LoopService instances, got {service!r}"
            raise TypeError(msg)
        if service.name in self._names:
            if any(service is other for other in self._services):
                msg = f"`services` lists {service!r} twice"
                raise ValueError(msg)
            msg = f"`services` has two services named {service.name!r}; give one a different `name=`"
            raise ValueError(msg)
        self._names.add(service.name)
        self._services.append(service)

    @property
    def services(self) -> tuple[LoopService, ...]:
        return tuple(self._services)

    @property
    def stats(self) -> tuple[ServiceStats, ...]:
        """The status snapshots of the services, in order."""
        return tuple(service.stats for service in self._services)

    @property
    def cancelled(self) -> tuple[str, ...]:
        """Names of the services whose setup or run the last forced stop cancelled."""
        return tuple(self._cancelled)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every service until the group is stopped; see the class docstring.

        Raises:
            ExceptionGroup: The failures of the services that failed (each error carries a note
                naming its service), after the other services were stopped gracefully.
            RuntimeError: The group, or one of its services, is already running.
        """
        if self._running:
            msg = "this ServiceGroup is already running"
            raise RuntimeError(msg)
        for service in self._services:
            service._check_startable()  # noqa: SLF001 (fail before anything starts)
        self._running, self._stop_requested = True, False
        self._stop_event, self._all_stopped, self._finished = anyio.Event(), anyio.Event(), anyio.Event()
        self._setups_done = anyio.Event()
        self._failures, self._cancelled = [], []
        self._timer = SharedTimer()
        try:
            async with open_task_group() as task_group:
                await task_group.start(self._timer.run)
                if self.handle_signals and can_handle_signals():
                    await task_group.start(watch_signals, self.request_stop, self._force_stop, logger)
                self._task_group = task_group
                await self._start_services(task_group)
                logger.info("started %d service%s", len(self._services), "s" if len(self._services) != 1 else "")
                task_status.started()
                await self._stop_event.wait()
                await self._stop_services()
                task_group.cancel_scope.cancel()
        finally:
            self._running = False
            self._task_group = self._timer = None
            self._finished.set()
            logger.info("all services stopped")
        if self._failures:
            count = len(self._failures)
            msg = f"{count} loopsvc service{'s' if count != 1 else ''} failed"
            raise ExceptionGroup(msg, self._failures)

    async def _start_services(self, task_group: TaskGroup) -> None:
        """Start every service; return once each is set up (or has failed to be).

        A stop request also ends the wait: a setup that hangs must not keep the group from
        stopping (the grace period, then the forced stop, deal with it).
        """
        assert self._setups_done is not None  # noqa: S101 (set by run)
        done = self._setups_done
        pending = len(self._services)

        def one_ready() -> None:
            nonlocal pending
            pending -= 1
            if pending == 0:
                done.set()

        for service in self._services:
            self._launch(task_group, service, one_ready)
        if pending:
            await done.wait()

    def _launch(self, task_group: TaskGroup, service: LoopService, on_ready: Callable[[], None]) -> None:
        self._active += 1
        task_group.start_soon(self._supervise, service, on_ready, name=f"loopsvc:{service.name}")

    def add(self, service: LoopService) -> None:
        """Add a service to the running group; it is set up and started there.

        Raises:
            RuntimeError: The group is not running, or is stopping.
            TypeError, ValueError: As for the constructor's `services`.
        """
        if self._task_group is None or self._stop_requested:
            msg = "services can only be added to a running ServiceGroup that is not stopping"
            raise RuntimeError(msg)
        if isinstance(service, LoopService):
            service._check_startable()  # noqa: SLF001 (fail in the caller, not in the group)
        self._append(service)
        self._launch(self._task_group, service, _noop)

    def request_stop(self) -> None:
        """Ask every service to stop gracefully; idempotent, returns at once."""
        if not self._running or self._stop_requested:
            return
        self._stop_requested = True
        for service in self._services:
            service.request_stop()
        for event in (self._stop_event, self._setups_done):
            if event is not None:
                event.set()

    async def stop(self) -> None:
        """Request a graceful stop and wait until `run()` has finished.

        Returns at once when the group is not running, and when awaited from inside one of its
        services, where waiting would deadlock.
        """
        finished = self._finished
        if not self._running or finished is None:
            return
        self.request_stop()
        inside = current_service.get()
        if not any(inside is service for service in self._services):
            await finished.wait()

    def _force_stop(self) -> None:
        """Cancel the setups and runs still in flight; shutdown hooks still run."""
        if not self._running:
            return
        self.request_stop()
        for service in self._services:
            if service._force_stop():  # noqa: SLF001 (the group owns its services)
                self._cancelled.append(service.name)

    async def _stop_services(self) -> None:
        assert self._all_stopped is not None  # noqa: S101 (set by run)
        if self._active == 0:  # an empty group, or every service has stopped already
            return
        grace = math.inf if self.grace_seconds is None else self.grace_seconds
        with anyio.move_on_after(grace):
            await self._all_stopped.wait()
        if not self._all_stopped.is_set():
            logger.warning("the grace period of %g seconds has ended: forcing the stop", grace)
            self._force_stop()
            await self._all_stopped.wait()

    async def _supervise(self, service: LoopService, on_ready: Callable[[], None]) -> None:
        """Run one service; restart it on failure when the policy says so."""
        assert self._timer is not None  # noqa: S101 (set by run)
        failures: list[float] = []  # when this service's recent starts failed
        reported = False

        def ready() -> None:
            nonlocal reported
            if not reported:
                reported = True
                on_ready()

        try:
            while not self._stop_requested:
                try:
                    await service._start(self.loops, self._timer, own_signals=False, on_started=ready)  # noqa: SLF001
                except Exception as error:  # noqa: BLE001 (recorded, logged, and raised by run())
                    ready()
                    if not await self._restart_after(service, error, failures):
                        return
                else:
                    return
        finally:
            ready()
            self._active -= 1
            if self._active == 0 and self._all_stopped is not None:
                self._all_stopped.set()
                self.request_stop()  # nothing left to run: the group is done

    async def _restart_after(self, service: LoopService, error: Exception, failures: list[float]) -> bool:
        """Decide about a failed service: wait and return True to restart it, or make it final."""
        now = anyio.current_time()
        failures.append(now)
        failures[:] = [t for t in failures if t >= now - self.restart_window_seconds]
        if self.restart == "never" or self._stop_requested or len(failures) > self.max_restarts:
            logger.error("%s failed: %s", service.name, safe_repr(error), exc_info=error)
            error.add_note(f"raised by the loopsvc service {service.name!r}")
            self._failures.append(error)
            self.request_stop()
            return False
        delay = restart_delay(len(failures), service._random())  # noqa: SLF001 (the service's seeded generator)
        service._restarts += 1  # noqa: SLF001
        logger.warning(
            "%s failed: %s; restarting in %.2f seconds (restart %d)",
            service.name,
            safe_repr(error),
            delay,
            service._restarts,  # noqa: SLF001
            exc_info=error,
        )
        assert self._stop_event is not None  # noqa: S101 (set by run)
        with anyio.move_on_after(delay):
            await self._stop_event.wait()
        return not self._stop_requested


async def run_services(  # noqa: PLR0913 (the options of ServiceGroup)
    services: Iterable[LoopService],
    *,
    handle_signals: bool = True,
    grace_seconds: float | None = 30.0,
    restart: Restart = "never",
    max_restarts: int = 5,
    restart_window_seconds: float = 60.0,
    loops: int | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run `services` in a ServiceGroup until stopped: `ServiceGroup(...).run()`."""
    group = ServiceGroup(
        services,
        handle_signals=handle_signals,
        grace_seconds=grace_seconds,
        restart=restart,
        max_restarts=max_restarts,
        restart_window_seconds=restart_window_seconds,
        loops=loops,
    )
    await group.run(task_status=task_status)


run_multiple_services = run_services
"""The seed's name for `run_services`."""
