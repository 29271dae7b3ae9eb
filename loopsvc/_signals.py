# Signal handling for whatever runs at the top: a lone service or a ServiceGroup.
#
# One receiver for SIGINT and SIGTERM, installed through anyio (Trio's own receiver under
# Trio), only in the main thread, and only for as long as the owner runs; the host's previous
# handlers come back afterwards. The first signal asks for a graceful stop, the second forces
# it, later ones change nothing.
from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def can_handle_signals() -> bool:
    return threading.current_thread() is threading.main_thread()


async def watch_signals(
    graceful: Callable[[], object],
    force: Callable[[], object],
    logger: logging.Logger,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call `graceful` on the first stop signal and `force` on the second."""
    with anyio.open_signal_receiver(*STOP_SIGNALS) as received:
        task_status.started()
        count = 0
        async for signum in received:
            count += 1
            name = signal.Signals(signum).name
            if count == 1:
                logger.warning("received %s: stopping gracefully (send another to force)", name)
                graceful()
            elif count == 2:
                logger.warning("received %s again: forcing the stop", name)
                force()
            else:
                logger.info("received %s: already forcing the stop", name)
