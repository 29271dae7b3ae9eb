# Internal task groups that do not change what escapes them.
#
# anyio task groups always wrap errors in an ExceptionGroup. loopsvc uses task groups only as
# an implementation detail (a signal watcher beside a service, a timer beside a group), so a
# lone error, including Cancelled and KeyboardInterrupt, is re-raised bare, with its own
# traceback, cause and context.
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import TaskGroup


@contextlib.asynccontextmanager
async def open_task_group() -> AsyncIterator[TaskGroup]:
    try:
        async with anyio.create_task_group() as task_group:
            yield task_group
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        error = group.exceptions[0]
        context = error.__context__
        try:
            raise error
        finally:
            error.__context__ = context
            del error, context
