"""How a replay shows its progress: a bar on a terminal, a line per batch elsewhere
(logs, pipes, CI); the replay calls either through :class:`Progress`."""

from __future__ import annotations

from typing import Any, Protocol, TextIO

from tools.replay.model import Summary


class Progress(Protocol):
    def started(self, summary: Summary) -> None: ...
    def batch(self, summary: Summary, first: int, last: int) -> None: ...
    def finished(self, summary: Summary) -> None: ...


class PlainProgress:
    """A line per batch (for logs, pipes and CI)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def started(self, summary: Summary) -> None:
        r = summary.request
        print(f"replaying {r.hub} partition {r.partition}, {r.first}-{r.last} ({r.stream})", file=self.out, flush=True)

    def batch(self, summary: Summary, first: int, last: int) -> None:
        total = summary.request.last - summary.request.first + 1
        print(f"{first}-{last}: read {summary.read}/{total}, archived now {summary.archived_now}, already archived "
              f"{summary.already_archived}, dead-lettered {sum(summary.dead_lettered.values())}", file=self.out,
              flush=True)

    def finished(self, summary: Summary) -> None:
        pass


class RichProgress:
    """A progress bar on a terminal (rich), with the counts beside it."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[counts]}"), console=console, transient=False)
        self.task: Any = None

    def started(self, summary: Summary) -> None:
        r = summary.request
        self.bar.start()
        self.task = self.bar.add_task(f"{r.hub}/{r.partition}", total=r.last - r.first + 1, counts="connecting")

    def batch(self, summary: Summary, first: int, last: int) -> None:
        self.bar.update(self.task, completed=summary.read, counts=(
            f"archived now {summary.archived_now} · already {summary.already_archived} · dead-lettered "
            f"{sum(summary.dead_lettered.values())}"))

    def finished(self, summary: Summary) -> None:
        self.bar.stop()
