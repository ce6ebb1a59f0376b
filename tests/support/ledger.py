"""A partition's log that any process builds the same, for the archive ledger's tests and
the other worker process they start."""

from __future__ import annotations

from datetime import datetime, timedelta

from standins.eventhub_factory import Partition
from tests.support.streams import START, telemetry


def fleet_log(name: str, first: int, count: int, prefix: str = "h", start: datetime = START) -> Partition:
    """The same partition in any process: its events depend only on the arguments
    (five devices, ``{prefix}0`` to ``{prefix}4``, in turn, each message's metric
    ``seq`` its place in the log)."""
    log = Partition(name, "1", first_sequence=first, first_enqueued=start, spacing=timedelta(seconds=1))
    log.publish([telemetry(f"{prefix}{n % 5}", n, seq=n, start=start) for n in range(count)])
    return log
