"""The demo services of `python -m loopsvc`: what the library does, in a few seconds.

Every run finishes within 2 seconds, so a stop is quick. With `--loops 2` each service shows
its trick once: the heartbeat beats, `flaky` fails its second run (logged, the loop goes on),
`slow` overruns its first run (a warning and an immediate next run), and `jittery` starts
at a random offset from its slot and has its second run cancelled by its timeout.
"""

from __future__ import annotations

import anyio

from ._service import LoopService


class Heartbeat(LoopService):
    """Logs a beat every second."""

    loop_seconds = 1.0

    def __init__(self) -> None:
        super().__init__(name="heartbeat")
        self.beats = 0

    async def run_once(self) -> None:
        self.beats += 1
        self.logger.info("heartbeat %d", self.beats)


class Flaky(LoopService):
    """Fails every third run, starting with the second."""

    loop_seconds = 1.5

    def __init__(self) -> None:
        super().__init__(name="flaky")
        self.count = 0

    async def run_once(self) -> None:
        self.count += 1
        if self.count % 3 == 2:
            msg = f"simulated failure of run {self.count}"
            raise RuntimeError(msg)
        self.logger.info("flaky run %d went fine", self.count)


class Slow(LoopService):
    """Overruns its 1 s interval every fourth run, starting with the first."""

    loop_seconds = 1.0

    def __init__(self) -> None:
        super().__init__(name="slow")
        self.count = 0

    async def run_once(self) -> None:
        self.count += 1
        seconds = 1.5 if self.count % 4 == 1 else 0.2
        await anyio.sleep(seconds)
        self.logger.info("slow run %d took %.1f seconds", self.count, seconds)


class Jittery(LoopService):
    """Starts up to 0.5 s after each 2 s slot; every third run hangs and is timed out."""

    loop_seconds = 2.0
    jitter = 0.25
    run_timeout_seconds = 0.5

    def __init__(self) -> None:
        super().__init__(name="jittery")
        self.count = 0

    async def run_once(self) -> None:
        self.count += 1
        if self.count % 3 == 2:
            await anyio.sleep(1.5)  # longer than run_timeout_seconds: cancelled at 0.5 s
        self.logger.info("jittery run %d", self.count)


def demo_services() -> list[LoopService]:
    return [Heartbeat(), Flaky(), Slow(), Jittery()]
