"""A faithful re-implementation of the seed design: Prefect Orion's LoopService.

Written fresh from loopsvc's design notes, to measure what users had before: asyncio, the
schedule read from the wall clock (`pendulum.now("UTC")`), a stop flag polled at most every
second, and `asyncio.gather` for many services. Only for the benchmarks: it keeps the seed's
weak points on purpose (`loop_seconds=0` is "not given", a stop takes up to a second).
"""

from __future__ import annotations

import asyncio
import logging
import signal

import pendulum


class SeedLoopService:
    loop_seconds: float = 60

    def __init__(self, loop_seconds: float | None = None, handle_signals: bool = True) -> None:
        if loop_seconds:
            self.loop_seconds = loop_seconds
        self._should_stop = False
        self._is_running = False
        self.name = type(self).__name__
        self.logger = logging.getLogger(f"orion.services.{self.name.lower()}")
        if handle_signals:
            signal.signal(signal.SIGINT, self._stop_on_signal)
            signal.signal(signal.SIGTERM, self._stop_on_signal)

    def _stop_on_signal(self, *_: object) -> None:
        self._should_stop = True

    async def setup(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def run_once(self) -> None:
        raise NotImplementedError

    async def start(self, loops: int | None = None) -> None:
        self._should_stop = False
        self._is_running = True
        await self.setup()
        count = 0
        try:
            while not self._should_stop:
                start_time = pendulum.now("UTC")
                try:
                    await self.run_once()
                except NotImplementedError:
                    raise
                except Exception:
                    self.logger.exception("Unexpected error in: %s", self.name)
                count += 1
                if loops is not None and count >= loops:
                    break
                next_run = max(start_time.add(seconds=self.loop_seconds), pendulum.now("UTC"))
                if start_time < pendulum.now("UTC").subtract(seconds=self.loop_seconds):
                    self.logger.warning(
                        "%s took %s seconds to run, which is longer than its loop interval of %s seconds.",
                        self.name,
                        (pendulum.now("UTC") - start_time).total_seconds(),
                        self.loop_seconds,
                    )
                while pendulum.now("UTC") < next_run:
                    if self._should_stop:
                        break
                    await asyncio.sleep(min(1, (next_run - pendulum.now("UTC")).total_seconds()))
        finally:
            await self.shutdown()
            self._is_running = False

    async def stop(self) -> None:
        self._should_stop = True
        while self._is_running:  # noqa: ASYNC110 (the seed polls, and that is what is measured)
            await asyncio.sleep(0.1)


async def run_multiple_services(services: list[SeedLoopService]) -> None:
    await asyncio.gather(*(service.start() for service in services))
