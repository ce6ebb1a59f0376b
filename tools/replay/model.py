"""What a replay is asked and what it reports: the request, the summary (the counts and
where to resume) and the error that ends a range early, shared by every step."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from standins.invoke import max_event_batch_size

Stream = Literal["telemetry", "inference"]
Outcome = Literal["complete", "refused", "stalled", "failed", "interrupted"]

# Why 30 s: stored events come back within milliseconds of a receive, and opening the
# connection, its token and the link takes about a second (0.9 s against the stand-in);
# 30 s without the next event of a range the partition holds is no slow start but a stall.
DEFAULT_WAIT_SECONDS = 30.0
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process stopped by Ctrl-C


class ReplayError(Exception):
    """Why the range could not be read whole."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome: Outcome = outcome


@dataclass(frozen=True)
class Request:
    """What to replay and how to reach it."""

    hub: str
    partition: str
    first: int
    last: int
    stream: Stream
    consumer_group: str = "$Default"
    connection_string: str | None = None
    namespace: str | None = None  # NAME.servicebus.windows.net, with DefaultAzureCredential
    batch_size: int = field(default_factory=max_event_batch_size)
    wait: float = DEFAULT_WAIT_SECONDS


@dataclass
class Summary:
    """What a replay did: events are Event Hubs events; archived and dead-lettered
    count messages (an array body holds several)."""

    request: Request
    read: int = 0  # events handed to ingest, from request.first on
    archived_now: int = 0
    already_archived: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)  # messages, by reason
    superseded: int = 0  # last-retry dead letters marked redriven: their events are archived now
    batches: int = 0
    outcome: Outcome = "complete"
    problem: str = ""

    @property
    def next_sequence(self) -> int:
        """Where a replay of the rest starts."""
        return self.request.first + self.read

    @property
    def exit_code(self) -> int:
        return {"complete": 0, "interrupted": EXIT_INTERRUPTED}.get(self.outcome, 1)

    def lines(self) -> list[str]:
        r = self.request
        total = r.last - r.first + 1
        dead = sum(self.dead_lettered.values())
        lines = [f"replay of {r.hub} partition {r.partition}, sequence numbers {r.first}-{r.last} "
                 f"({r.stream}, consumer group {r.consumer_group})",
                 f"  events read        {self.read:>9} of {total}",
                 f"  archived now       {self.archived_now:>9}",
                 f"  already archived   {self.already_archived:>9}",
                 f"  dead-lettered      {dead:>9}"]
        for reason, count in self.dead_lettered.most_common(10):
            lines.append(f"    {count:>7}  {reason}")
        if len(self.dead_lettered) > 10:
            lines.append(f"    {sum(c for _, c in self.dead_lettered.most_common()[10:]):>7}  "
                         f"({len(self.dead_lettered) - 10} other reasons)")
        if self.superseded:
            lines.append(f"  last-retry dead letters marked redriven {self.superseded} (their events are archived now)")
        if self.outcome == "complete":
            lines.append("complete: the whole range was read")
        else:
            lines.append(f"{self.outcome}: {self.problem}")
            if self.read:
                lines.append(f"the range is not whole: resume with --from {self.next_sequence} --to {r.last}")
            elif self.outcome != "refused":
                lines.append("nothing of the range was ingested")
        return lines
