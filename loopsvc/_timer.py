# How a service waits for its next slot.
#
# A wait must end at its deadline, or at once when the service is asked to stop or to run
# now: never by polling a flag. The service owns an `Alarm`; whoever wants the wait to end
# early rings it, and the timer that is waiting decides what ringing means.
#
# - `SoloTimer` (a service on its own): a cancel scope with the deadline; ringing cancels it.
# - `SharedTimer` (every service of a ServiceGroup): one deadline heap and one task that sleeps
#   until the earliest deadline, then wakes every service that is due. A service waits on a
#   cheap event instead of its own Trio timeout; with thousands of services this is what makes
#   a group cheaper per run than bare `trio.sleep_until` loops, whose expiries are each
#   delivered as a Cancelled exception. Ringing sets the event; the heap entry is left behind
#   and dropped when it comes up.
from __future__ import annotations

import heapq
import itertools
import math
from typing import TYPE_CHECKING, Any, Protocol

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable


class Alarm:
    """Ends the current wait early, if there is one."""

    __slots__ = ("_wake",)

    def __init__(self) -> None:
        self._wake: Callable[[], object] | None = None

    def ring(self) -> None:
        if self._wake is not None:
            self._wake()


class Timer(Protocol):
    async def wait_until(self, deadline: float, alarm: Alarm) -> None:
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


class SharedTimer:
    """One deadline heap and one sleeping task for many services."""

    __slots__ = ("_heap", "_scope", "_seq")

    def __init__(self) -> None:
        # Entries are [deadline, sequence, event or None]; None marks an abandoned wait.
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._scope: anyio.CancelScope | None = None

    async def wait_until(self, deadline: float, alarm: Alarm) -> None:
        event = anyio.Event()
        entry: list[Any] = [deadline, next(self._seq), event]
        heapq.heappush(self._heap, entry)
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline
        alarm._wake = event.set  # noqa: SLF001 (the alarm belongs to this module)
        try:
            await event.wait()
        finally:
            alarm._wake = None  # noqa: SLF001
            entry[2] = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Wake the services that are due, forever; cancel the caller's scope to end it."""
        heap = self._heap
        pop = heapq.heappop
        task_status.started()
        while True:
            now = anyio.current_time()
            while heap and heap[0][0] <= now:
                event = pop(heap)[2]
                if event is not None:
                    event.set()
            deadline = heap[0][0] if heap else math.inf
            with anyio.CancelScope(deadline=deadline) as self._scope:
                await anyio.sleep_forever()
            self._scope = None
