"""The simulation's progress while it runs: on a terminal a live panel (rich) redrawn
every second; elsewhere (CI, pipes, tests) a plain line every second."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

PERIOD_SECONDS = 1.0


@dataclass(frozen=True)
class Figures:
    elapsed: float  # seconds since publishing began
    online: int
    devices: int
    published: int
    routed: int  # stream messages the stand-in took off the broker and delivered
    stored: int  # of those, in a batch the app has returned from
    dead_lettered: int
    responses: int  # command answers routed to the app
    lifecycle_events: int
    commands: dict[str, int]  # the commands sent so far, by status

    def line(self) -> str:
        statuses = ", ".join(f"{s} {n}" for s, n in sorted(self.commands.items())) or "none"
        return (f"  {self.elapsed:5.1f} s: published {self.published}, routed {self.routed}, stored {self.stored}, "
                f"dead-lettered {self.dead_lettered}, responses {self.responses}, life cycle events "
                f"{self.lifecycle_events}, online {self.online}/{self.devices}; commands: {statuses}")


def panel(figures: Figures) -> Panel:
    """The live view of ``figures``."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [("Devices online", f"{figures.online}/{figures.devices}"), ("Published", figures.published),
            ("Routed", figures.routed), ("Stored", figures.stored), ("Dead-lettered", figures.dead_lettered),
            ("Command responses", figures.responses), ("Life cycle events", figures.lifecycle_events)]
    for name, value in rows:
        table.add_row(name, str(value))
    for status, count in sorted(figures.commands.items()):
        table.add_row(f"Commands {status}", str(count))
    return Panel(table, title="Simulated fleet", subtitle=f"{figures.elapsed:.0f} s", expand=False)


@contextlib.contextmanager
def _logs_through(stream: TextIO) -> Iterator[None]:
    """The root logger's stream handlers write to ``stream`` for the block (the live
    view's proxy, so that a log line goes above the panel instead of through it)."""
    handlers = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    saved = [h.setStream(stream) for h in handlers]
    try:
        yield
    finally:
        for handler, old in zip(handlers, saved, strict=True):
            handler.setStream(old)


async def watch(sample: Callable[[], Awaitable[Figures]], stop: asyncio.Event, *, live: bool | None = None,
                console: Console | None = None) -> None:
    """Show ``sample()`` every second until ``stop`` is set; live on a terminal
    (``live`` None: when stdout is one)."""
    live = sys.stdout.isatty() if live is None else live

    async def tick() -> bool:
        try:
            await asyncio.wait_for(stop.wait(), PERIOD_SECONDS)
        except TimeoutError:
            return True
        return False

    if not live:
        while await tick():
            print((await sample()).line(), flush=True)
        return
    with Live(panel(await sample()), console=console, auto_refresh=False, transient=False) as view, \
            _logs_through(sys.stderr):
        while await tick():
            view.update(panel(await sample()), refresh=True)
        view.update(panel(await sample()), refresh=True)
