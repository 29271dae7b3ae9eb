"""The floor: bare Trio tasks that loop `await trio.sleep_until(t); t += period`, no features."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Callable


async def floor_loop(period: float, phase: float, on_run: Callable[[float], object]) -> None:
    """Run `on_run(slot)` at `start + phase + k * period` until cancelled."""
    t = trio.current_time() + phase
    while True:
        await trio.sleep_until(t)
        on_run(t)
        t += period
