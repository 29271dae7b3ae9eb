"""Small services the tests share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

import loopsvc

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


class Recorder(loopsvc.LoopService):
    """Records the virtual start time of every run and the hooks it went through."""

    loop_seconds = 10

    def __init__(
        self, *args: object, durations: Iterable[float] = (), fail_on: Iterable[int] = (), **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.starts: list[float] = []
        self.events: list[str] = []
        self.durations = list(durations)
        self.fail_on = set(fail_on)
        self.on_run: Callable[[int], object] | None = None

    async def setup(self) -> None:
        self.events.append("setup")

    async def shutdown(self) -> None:
        self.events.append("shutdown")

    async def run_once(self) -> None:
        n = len(self.starts)
        self.starts.append(anyio.current_time())
        self.events.append("run")
        if self.on_run is not None:
            result = self.on_run(n)
            if hasattr(result, "__await__"):
                await result  # type: ignore[misc]
        if n < len(self.durations):
            await anyio.sleep(self.durations[n])
        if n in self.fail_on:
            raise ValueError(f"run {n} failed")


def offsets(times: Iterable[float], t0: float) -> list[float]:
    return [round(t - t0, 9) for t in times]
