"""Send dead letters through their pipeline again, once their cause is fixed.

    python -m tools.redrive --stream telemetry --reason "timestamp" --dry-run
    python -m tools.redrive --stream telemetry --reason "timestamp" --since 2026-11-20T00:00:00Z --rate 50

Selects dead letters through their index (table ``deadletters``) by stream, reason
(a prefix), device and time received (``--since``/``--until``, RFC 3339), leaving
out those redriven before; ``--dry-run`` lists them with a count by reason and
changes nothing. Otherwise each goes through its stream's pipeline in this process,
with its original bytes and origin (:mod:`shared.deadletters.redrive`): an accepted
one is marked ``redrivenAt`` (blob and index row) and is never sent again; one
rejected again stays, with its new reason; an element of an array body is left
alone (the pipeline reads no position). Progress goes to stderr (one line redrawn on
a terminal), a summary to stdout at the end. Exit status: 0 when every dead letter
selected is redriven (or nothing was selected), 1 otherwise, 130 after Ctrl-C.

Ctrl-C stops after the dead letter being sent (a second Ctrl-C stops at once; its
claim then goes stale in 10 minutes and the next run sends it again, which the
pipelines make harmless). Two runs at once, or a second run, redrive nothing twice.

It runs the pipelines with the settings in its environment, as the app reads them:
``DataStorage`` (a connection string, or ``DataStorage__blobServiceUri`` and
``DataStorage__tableServiceUri`` with your ``az login``), and the rule that was fixed
(say ``MAX_FUTURE_SECONDS``), ``ALERT_RULES``, ``ALERTS_HUB_NAME``, the hub names and
the command transport's settings as the function app has them. ``--settings FILE``
reads a ``local.settings.json`` first (the environment wins). ``--reindex`` writes the
index rows of dead letters stored before the index existed, and changes nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

from shared.deadletters.redrive import Outcome, Result, redrive_one
from shared.deadletters.store import Selection, every_row, reindex
from shared.platform.deadletter import MAX_INDEXED_REASON, STREAMS
from shared.platform.errors import InvalidInput
from shared.platform.keys import validate_device_id
from shared.platform.storage import data_store
from shared.platform.timestamps import parse_timestamp

# Progress on a terminal is redrawn at most this often; elsewhere one line this often.
REDRAW_SECONDS, LINE_SECONDS = 0.1, 5.0
_MASKS = (
    (re.compile(r"\d{4}-\d{2}-\d{2}T\S*"), "<time>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "'…'"),
    (re.compile(r"\d+(\.\d+)?"), "N"),
)


def reason_kind(reason: str) -> str:
    """A reason with its times, quoted values and numbers masked, so that like
    reasons count together (``body is 300000 bytes, more than 262144`` and
    ``body is 400000 bytes, ...`` are one kind)."""
    for pattern, mask in _MASKS:
        reason = pattern.sub(mask, reason)
    return reason


@dataclass
class Tally:
    """What a run did, for the progress line and the summary."""

    selected: int = 0
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    details: dict[Outcome, Counter[str]] = field(default_factory=dict)
    interrupted: bool = False

    def add(self, result: Result) -> None:
        self.outcomes[result.outcome] += 1
        if result.outcome not in (Outcome.REDRIVEN, Outcome.ALREADY):
            self.details.setdefault(result.outcome, Counter())[reason_kind(result.detail)] += 1

    @property
    def done(self) -> int:
        return sum(self.outcomes.values())

    def line(self, elapsed: float) -> str:
        rate = self.done / elapsed if elapsed > 0 else 0.0
        counts = ", ".join(f"{outcome} {n}" for outcome, n in self.outcomes.most_common())
        return f"[{self.done}/{self.selected}] {counts or 'starting'} ({rate:.1f}/s)"

    def summary(self) -> str:
        lines = [f"{self.selected} dead letter(s) selected"]
        for outcome in Outcome:
            if self.outcomes[outcome]:
                lines.append(f"{outcome}: {self.outcomes[outcome]}")
                lines += [f"  {n:6d}  {detail}" for detail, n in self.details.get(outcome, Counter()).most_common()]
        if self.interrupted:
            lines.append(f"interrupted: {self.selected - self.done} not attempted; run again to continue")
        return "\n".join(lines)

    def status(self) -> int:
        if self.interrupted:
            return 130
        finished = self.outcomes[Outcome.REDRIVEN] + self.outcomes[Outcome.ALREADY]
        return 0 if finished == self.selected else 1


class Progress:
    """One line redrawn on a terminal, else a line every few seconds."""

    def __init__(self, stream: TextIO) -> None:
        self._stream, self._tty = stream, stream.isatty()
        self._started = self._shown = time.monotonic()

    def show(self, tally: Tally, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._shown < (REDRAW_SECONDS if self._tty else LINE_SECONDS):
            return
        self._shown = now
        text = tally.line(now - self._started)
        self._stream.write(f"\r{text}\x1b[K" + ("\n" if final else "") if self._tty else text + "\n")
        self._stream.flush()


async def select(selection: Selection, limit: int | None) -> list[dict[str, Any]]:
    """The index rows of the dead letters to redrive, newest first: not redriven yet."""
    chosen: list[dict[str, Any]] = []
    async for row in every_row(data_store(), selection):
        if row.get("redrivenAt") is None:
            chosen.append(row)
            if limit is not None and len(chosen) >= limit:
                break
    return chosen


def dry_run(rows: Sequence[dict[str, Any]], out: TextIO) -> int:
    """List ``rows`` and count them by reason; change nothing."""
    out.write("receivedAt\tstream\tdeadLetterId\tdeviceId\treason\n")
    for row in rows:
        out.write(f"{row['receivedAt']}\t{row['PartitionKey']}\t{row['deadLetterId']}\t{row.get('deviceId') or '-'}"
                  f"\t{row['reason']}\n")
    ready = [row for row in rows if row.get("position") is None]
    out.write(f"would redrive {len(ready)} dead letter(s):\n")
    for kind, n in Counter(reason_kind(row["reason"]) for row in ready).most_common():
        out.write(f"  {n:6d}  {kind}\n")
    if len(ready) < len(rows):
        out.write(f"not redrivable: {len(rows) - len(ready)} element(s) of array bodies (the pipeline reads no "
                  "position from an event)\n")
    return 0


async def redrive(rows: Sequence[dict[str, Any]], *, rate: float, stop: asyncio.Event, err: TextIO,
                  run: str | None = None) -> Tally:
    """Redrive ``rows`` one after the other, at most ``rate`` a second (0: no limit),
    until done or ``stop`` is set (the one being sent is finished first)."""
    run = run or uuid.uuid4().hex
    tally, progress = Tally(selected=len(rows)), Progress(err)
    started = time.monotonic()
    for index, row in enumerate(rows):
        if rate > 0:
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            tally.interrupted = True
            break
        if row.get("position") is not None:
            tally.add(Result(Outcome.NOT_REDRIVABLE, "an element of an array body (the pipeline reads no position "
                                                     "from an event)"))
        else:
            tally.add(await redrive_one(data_store(), row["PartitionKey"], row["deadLetterId"], run=run))
        progress.show(tally)
    progress.show(tally, final=True)
    return tally


async def run_command(args: argparse.Namespace, *, out: TextIO, err: TextIO, stop: asyncio.Event) -> int:
    """The command, on a running loop (the tests call it on theirs)."""
    selection = Selection(stream=args.stream, reason=args.reason, device_id=args.device, since=args.since,
                          until=args.until)
    if args.reindex:
        count = sum([await reindex(data_store(), stream) for stream in selection.streams])
        out.write(f"indexed {count} dead letter(s)\n")
        return 0
    rows = await select(selection, args.limit)
    if args.dry_run:
        return dry_run(rows, out)
    err.write(f"redriving {len(rows)} dead letter(s); Ctrl-C stops after the one being sent\n")
    tally = await redrive(rows, rate=args.rate, stop=stop, err=err)
    out.write(tally.summary() + "\n")
    return tally.status()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    def timestamp(text: str) -> datetime:
        try:
            return parse_timestamp(text, field="the time")
        except InvalidInput as exc:
            raise argparse.ArgumentTypeError(exc.reason) from None

    def device(text: str) -> str:
        try:
            return validate_device_id(text)
        except InvalidInput as exc:
            raise argparse.ArgumentTypeError(exc.reason) from None

    def reason(text: str) -> str:
        if not 1 <= len(text) <= MAX_INDEXED_REASON:
            raise argparse.ArgumentTypeError(f"a reason prefix is 1 to {MAX_INDEXED_REASON} characters")
        return text

    parser = argparse.ArgumentParser(prog="python -m tools.redrive", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stream", choices=STREAMS, help="only this stream's (default: all four)")
    parser.add_argument("--reason", type=reason, help="only those whose reason starts with this text")
    parser.add_argument("--device", type=device, help="only those whose bytes name this device")
    parser.add_argument("--since", type=timestamp, help="only those received at or after this time (RFC 3339)")
    parser.add_argument("--until", type=timestamp, help="only those received at or before this time (RFC 3339)")
    parser.add_argument("--limit", type=int, help="at most this many (the newest)")
    parser.add_argument("--rate", type=float, default=0.0, help="at most this many a second (default: no limit)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be redriven; change nothing")
    parser.add_argument("--reindex", action="store_true",
                        help="index dead letters stored before the index existed, then stop")
    parser.add_argument("--settings", type=Path, help="a local.settings.json to read settings from first")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.rate < 0:
        parser.error("--rate must not be negative")
    return args


def load_settings(path: Path) -> None:
    """The ``Values`` of a local.settings.json into the environment, where not set already."""
    values = orjson.loads(path.read_bytes()).get("Values", {})
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.settings:
        load_settings(args.settings)

    async def run() -> int:
        from shared.platform.storage import reset_data_store

        stop = asyncio.Event()
        loop, task = asyncio.get_running_loop(), asyncio.current_task()

        def interrupt() -> None:
            if stop.is_set() and task is not None:
                task.cancel()  # the second Ctrl-C
                return
            stop.set()
            sys.stderr.write("\nstopping after the dead letter being sent (Ctrl-C again to stop at once)\n")

        loop.add_signal_handler(signal.SIGINT, interrupt)
        try:
            return await run_command(args, out=sys.stdout, err=sys.stderr, stop=stop)
        except asyncio.CancelledError:
            sys.stderr.write("stopped at once; a dead letter being sent stays claimed for 10 minutes\n")
            return 130
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            await reset_data_store()

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
