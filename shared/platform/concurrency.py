"""Independent actions at bounded concurrency, none costing another."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def each(items: Iterable[T], action: Callable[[T], Awaitable[None]], *, limit: int) -> None:
    """``action`` on every item, at most ``limit`` at once; every one runs whatever the
    others do, then the first failure is raised (its note counts the rest), so the
    caller's retry finds the successes done and only the failures left."""
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with gate:
            await action(item)

    results = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        first = failures[0]
        if len(failures) > 1:
            first.add_note(f"{len(failures) - 1} more of {len(results)} failed as well")
        raise first
