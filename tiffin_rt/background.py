"""Tasks kept alive: short fire-and-forget work, and long-lived tasks owned by a cleanup context.

asyncio keeps only a weak reference to a task: one nobody holds can vanish mid-flight. These
tasks are held until done, a failure is logged instead of surfacing as "Task exception was
never retrieved", and shutdown can cancel or wait for what is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


class BackgroundTasks:
    """The running tasks of one owner (a namespace, the Engine.IO server)."""

    __slots__ = ("_tasks", "_what")

    def __init__(self, what: str) -> None:
        self._what = what
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s background work failed: %r", self._what, task.exception())

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait(self, seconds: float) -> None:
        """Let what is running finish, for at most `seconds`."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=seconds)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel a long-lived task and wait for it: the end of every cleanup context that runs one."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def task_context(
    name: str, work: Callable[[web.Application], Coroutine[Any, Any, None]]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs `work(app)` as one long-lived task for the app's lifetime."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(work(app), name=name)
        try:
            yield
        finally:
            await cancel_and_wait(task)

    context.__name__ = context.__qualname__ = name.replace("-", "_")
    return context
