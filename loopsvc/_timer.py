# How a service waits for its next slot.
#
# A wait must end at its deadline, or at once when the service is asked to stop or to run
# now: never by polling a flag. The service owns an `Alarm`; whoever wants the wait to end
# early rings it, and the timer that is waiting decides what ringing means.
#
# - `SoloTimer` (a service on its own): a cancel scope with the deadline; ringing cancels it.
# - `SharedTimer` (every service of a ServiceGroup): one deadline heap and one task that sleeps
#   until the earliest deadline, then wakes every service that is due. A service parks its task
#   (the cheapest wait the backend has) instead of arming its own Trio timeout; with thousands
#   of services this is what makes a group cheaper per run than bare `trio.sleep_until` loops,
#   whose expiries are each delivered as a Cancelled exception. Ringing unparks it; the heap entry is left behind
#   and dropped when it comes up.
from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import trio
import trio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


class Alarm:
    """Ends the current wait early, if there is one: a service's waiting slot.

    The shared timer parks the service's task here under Trio, with bound methods made once
    per service, so a wait allocates nothing but its heap entry.
    """

    __slots__ = ("_abort_cb", "_entry", "_task", "_unpark_cb", "_wake")
    _task: trio.lowlevel.Task  # set by the timer before anything can unpark it

    def __init__(self) -> None:
        self._wake: Callable[[], object] | None = None
        self._entry: list[Any] | None = None
        self._unpark_cb = self._unpark
        self._abort_cb = self._abort

    def ring(self) -> None:
        if self._wake is not None:
            self._wake()

    def _unpark(self) -> None:
        entry = self._entry
        if entry is not None:
            entry[2] = self._entry = self._wake = None
            trio.lowlevel.reschedule(self._task)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        entry = self._entry
        if entry is not None:
            entry[2] = self._entry = self._wake = None
        return trio.lowlevel.Abort.SUCCEEDED


class Timer(Protocol):
    @property
    def wait_until(self) -> Callable[[float, Alarm], Awaitable[None]]:
        """Return at `deadline` on the loop clock, or as soon as `alarm` rings."""


class SoloTimer:
    """A cancellable sleep: what a service uses when it runs on its own."""

    __slots__ = ()

    async def wait_until(self, deadline: float, alarm: Alarm) -> None:
        with anyio.CancelScope(deadline=deadline) as scope:
            alarm._wake = scope.cancel  # noqa: SLF001 (the alarm belongs to this module)
            try:
                await anyio.sleep_forever()
            finally:
                alarm._wake = None  # noqa: SLF001


def loop_clock() -> Callable[[], float]:
    """The event loop's clock function: Trio's own under Trio, anyio's elsewhere.

    `anyio.current_time()` looks the backend up on every call; a service reads the clock a few
    times per run, so it takes the backend's function once per start.
    """
    return trio.current_time if trio.lowlevel.in_trio_run() else anyio.current_time


class SharedTimer:
    """One deadline heap and one sleeping task for many services.

    A waiting service parks its task without a timeout of its own (Trio's lowlevel parking
    under Trio, a future under asyncio); the timer's task, or the service's alarm, unparks it.
    """

    __slots__ = ("_heap", "_scope", "_seq", "wait_until")

    def __init__(self) -> None:
        # Entries are [deadline, sequence, waker or None]; None marks a finished wait.
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._scope: trio.CancelScope | anyio.CancelScope | None = None
        # Chosen once: a service calls it for every run.
        self.wait_until: Callable[[float, Alarm], Awaitable[None]] = (
            self._park_trio if trio.lowlevel.in_trio_run() else self._park_future
        )

    def _push(self, deadline: float, waker: Callable[[], object]) -> list[Any]:
        entry = [deadline, next(self._seq), waker]
        heapq.heappush(self._heap, entry)
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline
        return entry

    async def _park_trio(self, deadline: float, alarm: Alarm) -> None:
        alarm._task = trio.lowlevel.current_task()  # noqa: SLF001 (the alarm belongs to this module)
        alarm._entry = self._push(deadline, alarm._unpark_cb)  # noqa: SLF001
        alarm._wake = alarm._unpark_cb  # noqa: SLF001
        await trio.lowlevel.wait_task_rescheduled(alarm._abort_cb)  # noqa: SLF001

    async def _park_future(self, deadline: float, alarm: Alarm) -> None:
        future = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        entry = self._push(deadline, wake)
        alarm._wake = wake  # noqa: SLF001 (the alarm belongs to this module)
        try:
            await future
        finally:
            entry[2] = alarm._wake = None  # noqa: SLF001

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Wake the services that are due, forever; cancel the caller's scope to end it."""
        heap = self._heap
        pop = heapq.heappop
        clock = loop_clock()
        # This task wakes thousands of times a second in a large group: under Trio it uses
        # Trio's scope and sleep directly, without anyio's wrappers (same API).
        on_trio = trio.lowlevel.in_trio_run()
        scope_type = trio.CancelScope if on_trio else anyio.CancelScope
        sleep_forever = trio.sleep_forever if on_trio else anyio.sleep_forever
        task_status.started()
        while True:
            now = clock()
            while heap and heap[0][0] <= now:
                wake = pop(heap)[2]
                if wake is not None:
                    wake()
            deadline = heap[0][0] if heap else math.inf
            with scope_type(deadline=deadline) as self._scope:
                await sleep_forever()
            self._scope = None
