"""Replay a range of one Event Hubs partition through the ingest code, exactly once.

    python -m tools.replay --hub telemetry --partition 0 --from 1000 --to 1999

When the last retry of a batch could not process it (dead letters with the reason
``internal: not processed after the last retry``, or ``LOST unless replayed: ...`` in
the function's log), its events are still in Event Hubs for the hub's retention. This
reads sequence numbers FROM to TO (both included) with the ``azure-eventhub`` consumer
and hands them, in batches of at most host.json's ``maxEventBatchSize``, to
:func:`shared.streams.service.ingest`, the code ``telemetry_ingest`` and
``inference_ingest`` run, as the host hands them to the worker: each batch is the
host's trigger data (:func:`standins.eventhub_factory.host_batch`), decoded by the worker
runtime's own conversion, each event with its real sequence number, offset, enqueued
time, partition key and properties, so archive lines and dead letters name the event's
true origin.

Exactly once is the archive's: its ledger in storage says what is archived, so a range
already archived archives nothing, a range it does not hold is filled, and a replay run
twice, or beside the live function, lands every message once. A ``not processed after
the last retry`` dead letter of an event the archive now holds is marked ``redrivenAt``
(history: listed, never redriven again; its event's place is the archive); a bad
message's dead letter keeps its validation reason.

The range is checked against the partition's properties first: a range past the
partition's end or expired from retention is refused before anything is read. Reading
waits at most ``--wait`` seconds for the next event. Ctrl-C stops after the batch in
hand (a second one at once; either way storage stays consistent, every step being
idempotent) and names the sequence number to resume from.

Exit code: 0 the whole range was read and ingested; 1 it was not (refused, stalled,
a read or ingest failure: the summary says why and where to resume); 2 bad arguments or
settings; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO

import orjson

from standins.eventhub_factory import Published, host_batch
from standins.invoke import max_event_batch_size

if TYPE_CHECKING:
    from azure.eventhub import EventData

    from standins.eventhub_factory import Batch

Stream = Literal["telemetry", "inference"]
Outcome = Literal["complete", "refused", "stalled", "failed", "interrupted"]

# The reason the last retry gives a batch it dead-letters (shared/streams/batch.py, give_up).
GIVE_UP_REASON = "internal: not processed after the last retry"
# Why 30 s: stored events come back within milliseconds of a receive, and opening the
# connection, its token and the link takes about a second (0.9 s against the stand-in);
# 30 s without the next event of a range the partition holds is no slow start but a stall.
DEFAULT_WAIT_SECONDS = 30.0
# Why 0.5 s: the consumer hands over what it has buffered every 50 ms; a batch waits up
# to ten of those for more events before it goes in part full (fewer, fuller blobs).
LINGER_SECONDS = 0.5
# Why 3 attempts, 5 and 10 s apart: each storage request is already retried twice within
# seconds (shared/platform/storage.py); what outlasts two more tries is no blip, and the
# replay stops and names where to resume rather than wait as the function would.
INGEST_ATTEMPTS = 3
INGEST_BACKOFF_SECONDS = 5.0
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


class Progress(Protocol):
    def started(self, summary: Summary) -> None: ...
    def batch(self, summary: Summary, first: int, last: int) -> None: ...
    def finished(self, summary: Summary) -> None: ...


# --------------------------------------------------------------------------- reading


def published(event: EventData) -> Published:
    """An event as the consumer received it, as the host reports it: the pure-Python
    AMQP decoder hands strings and binaries alike as bytes, so a key or property value
    that is UTF-8 is taken as the string it was sent as."""
    sequence, offset, enqueued = event.sequence_number, event.offset, event.enqueued_time
    if sequence is None or offset is None or enqueued is None:
        raise ReplayError("failed", f"an event without its sequence number, offset or enqueued time: {event!r}")
    if not offset.isdigit():
        raise ReplayError("failed", f"event {sequence}: offset {offset!r} is not a number (the host and the archive "
                                    "take numeric offsets)")
    body: Any = event.body
    raw = body if isinstance(body, bytes) else b"".join(body) if not isinstance(body, str) else body.encode()
    key = event.partition_key
    return Published(raw, sequence, int(offset), enqueued, _text(key) if key is not None else None,
                     {str(_text(k)): _plain(v) for k, v in (event.properties or {}).items()})


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value.hex()
    return value


def _plain(value: Any) -> Any:
    """A property value as JSON can carry it (the host writes them as JSON)."""
    value = _text(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def consumer(request: Request) -> tuple[Any, Any]:
    """The ``EventHubConsumerClient`` of the request, and the credential it owns (or None)."""
    from azure.eventhub.aio import EventHubConsumerClient

    if request.connection_string:
        return EventHubConsumerClient.from_connection_string(
            request.connection_string, request.consumer_group, eventhub_name=request.hub), None
    from azure.identity.aio import DefaultAzureCredential

    credential = DefaultAzureCredential()
    return EventHubConsumerClient(str(request.namespace), request.hub, request.consumer_group, credential), credential


def namespace_of(request: Request) -> str:
    """The namespace's host name, which the host reports in the batch's partition context."""
    if request.connection_string:
        from azure.eventhub import parse_connection_string

        return str(parse_connection_string(request.connection_string).fully_qualified_namespace)
    return str(request.namespace)


def _said(error: Exception, request: Request) -> str:
    """The SDK's error in one line, with what its status most likely means (the SDK
    drops the service's description of a failed management request)."""
    text = str(error).splitlines()[0]
    if "Status code: 404" in text:
        return f"{text} (the namespace has no hub {request.hub})"
    if "Status code: 400" in text:
        return f"{text} (the hub has no partition {request.partition})"
    if "Status code: 401" in text or "Status code: 403" in text:
        return f"{text} (reading needs Azure Event Hubs Data Receiver, or a key with Listen)"
    return text


def check_range(request: Request, properties: dict[str, Any]) -> None:
    """Refuse a range the partition does not hold whole (before reading anything)."""
    begin, end = int(properties["beginning_sequence_number"]), int(properties["last_enqueued_sequence_number"])
    where = f"{request.hub} partition {request.partition}"
    if properties.get("is_empty") or request.last > end:
        held = "holds no event" if properties.get("is_empty") else f"ends at sequence number {end}"
        hint = f": replay up to --to {end}" if not properties.get("is_empty") and request.first <= end else ""
        raise ReplayError("refused", f"{request.first}-{request.last} is past the end of {where}, which {held}{hint}")
    if request.first < begin:
        raise ReplayError("refused", f"{request.first}-{min(request.last, begin - 1)} expired from retention: "
                                     f"{where} begins at sequence number {begin} (replay from --from {begin})")


async def batches(client: Any, request: Request, stop: asyncio.Event) -> AsyncGenerator[list[Published]]:
    """The range's events in sequence order, in batches of at most
    ``request.batch_size``; a gap, a read error or ``request.wait`` seconds without the
    next event end it with :class:`ReplayError`. The client is closed at the end."""
    queue: asyncio.Queue[list[EventData] | Exception] = asyncio.Queue(maxsize=4)

    async def on_batch(_: Any, events: list[EventData]) -> None:
        await queue.put(events)

    async def on_error(_: Any, error: Exception) -> None:
        await queue.put(error)

    receiving = asyncio.ensure_future(client.receive_batch(
        on_batch, on_error=on_error, partition_id=request.partition, starting_position=request.first,
        starting_position_inclusive=True, max_batch_size=request.batch_size, prefetch=2 * request.batch_size))
    expected, pending = request.first, list[Published]()
    try:
        while expected <= request.last and not stop.is_set():
            try:
                item = await asyncio.wait_for(queue.get(), LINGER_SECONDS if pending else request.wait)
            except TimeoutError:
                if not pending:
                    raise ReplayError("stalled", f"no event {expected} within {request.wait:g} s (--wait)") from None
                yield pending
                pending = []
                continue
            if isinstance(item, Exception):
                raise ReplayError("failed", f"reading {request.hub} partition {request.partition} failed: "
                                            f"{_said(item, request)}")
            for event in item:
                number = event.sequence_number
                if number is None or number < expected:
                    continue  # already taken (the consumer may read again after a reconnect)
                if number > request.last:
                    break
                if number != expected:
                    raise ReplayError("failed", f"event {expected} is missing: the partition went on at {number} "
                                                "(expired from retention while reading?)")
                pending.append(published(event))
                expected += 1
                if len(pending) == request.batch_size:
                    yield pending
                    pending = []
        if pending:
            yield pending
    finally:
        await client.close()
        receiving.cancel()  # closed: what is left is its load balancer's sleep (30 s)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiving


# --------------------------------------------------------------------------- ingesting


async def ingest_batch(request: Request, records: Sequence[Published], namespace: str) -> Any:
    """``records`` through the function's code, as the host hands them; retried
    :data:`INGEST_ATTEMPTS` times (every step is idempotent)."""
    from shared.streams.service import ingest

    batch = host_batch(records, hub=request.hub, partition_id=request.partition, namespace=namespace,
                       consumer_group=request.consumer_group)
    for attempt in range(INGEST_ATTEMPTS):
        try:
            return batch, await ingest(request.stream, batch)
        except Exception as error:  # noqa: BLE001 - whatever fails the function is retried, as the host would
            span = f"{records[0].sequence_number}-{records[-1].sequence_number}"
            if attempt == INGEST_ATTEMPTS - 1:
                raise ReplayError("failed", f"ingesting {span} failed {INGEST_ATTEMPTS} times: "
                                            f"{type(error).__name__}: {error}") from None
            logging.getLogger(__name__).warning("ingesting %s failed (%s), trying again", span, error)
            await asyncio.sleep(INGEST_BACKOFF_SECONDS * 2 ** attempt)
    raise AssertionError("unreachable")


async def supersede(stream: str, batch: Batch) -> int:
    """Mark the last retry's dead letters of the events of ``batch`` redriven: the
    archive holds those events now that ingest returned, so each message keeps one
    place (a dead letter marked ``redrivenAt`` is history, never redriven again). One
    point read per event, by the id the dead letter has (:func:`dead_letter_id`); a
    bad message's dead letter, rewritten with its validation reason, is left as it is.
    Returns how many were marked."""
    from datetime import UTC, datetime

    from shared.deadletters.store import mark_redriven, read
    from shared.platform.deadletter import dead_letter_id
    from shared.platform.storage import data_store
    from shared.streams.batch import origin_of, partition_context

    context = partition_context(batch)
    hub, partition = str(context["EventHubName"]), str(context["PartitionId"])
    now = datetime.now(UTC)
    store = data_store()
    marked = 0
    for event in batch:
        origin = origin_of(event, hub=hub, partition=partition, now=now)
        letter_id = dead_letter_id(body=event.get_body(), origin={"eventHub": origin.to_json()},
                                   day=origin.enqueued_time)
        stored = await read(store, stream, letter_id)
        if stored is None or "redrivenAt" in stored.document:
            continue
        if str(stored.document.get("reason", "")).startswith(GIVE_UP_REASON) and await mark_redriven(
                store, stored, now):
            marked += 1
    return marked


async def replay(request: Request, *, progress: Progress | None = None, stop: asyncio.Event | None = None,
                 client_factory: Callable[[Request], tuple[Any, Any]] = consumer) -> Summary:
    """Replay ``request``'s range; never raises for what goes wrong with the range (the
    summary's outcome and problem say it)."""
    summary = Summary(request)
    stop = stop or asyncio.Event()
    if progress:
        progress.started(summary)
    client, credential = client_factory(request)
    try:
        try:
            properties = await asyncio.wait_for(client.get_partition_properties(request.partition), request.wait)
        except TimeoutError:
            raise ReplayError("stalled", f"no answer from {request.hub} within {request.wait:g} s (--wait)") from None
        except Exception as error:  # noqa: BLE001 - the SDK's errors, a refused sign-in, ...: said, not raised
            raise ReplayError("failed", f"reading the properties of {request.hub} partition {request.partition} "
                                        f"failed: {_said(error, request)}") from None
        check_range(request, properties)
        namespace = namespace_of(request)
        async with contextlib.aclosing(batches(client, request, stop)) as reading:
            async for records in reading:
                if stop.is_set():
                    break  # read, not ingested: the replay resumes at them
                await _ingest(summary, request, records, namespace, progress)
        if summary.next_sequence <= request.last:
            raise ReplayError("interrupted", "stopped by Ctrl-C after the batch in hand")
    except ReplayError as error:
        summary.outcome, summary.problem = error.outcome, str(error)
    finally:
        with contextlib.suppress(Exception):  # closed already, when it was read
            await client.close()
        if credential is not None:
            await credential.close()
    if progress:
        progress.finished(summary)
    return summary


async def _ingest(summary: Summary, request: Request, records: list[Published], namespace: str,
                  progress: Progress | None) -> None:
    batch, report = await ingest_batch(request, records, namespace)
    summary.superseded += await supersede(request.stream, batch)
    summary.read += len(records)
    summary.batches += 1
    summary.archived_now += report.archived
    summary.already_archived += report.accepted - report.archived
    summary.dead_lettered.update(report.rejected)
    if progress:
        progress.batch(summary, records[0].sequence_number, records[-1].sequence_number)


# --------------------------------------------------------------------------- showing


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


# --------------------------------------------------------------------------- the command


def load_settings_file(path: Path) -> list[str]:
    """The ``Values`` of a local.settings.json into the environment, where it does not
    set them already; returns the names taken."""
    values = orjson.loads(path.read_bytes()).get("Values", {})
    taken = [name for name, value in values.items() if value not in (None, "") and not os.environ.get(name)]
    os.environ.update({name: str(values[name]) for name in taken})
    return taken


def stream_of(hub: str, given: str | None) -> Stream:
    """The stream a hub carries: by the app's hub settings, or ``given``."""
    from shared.platform.settings import settings_of
    from shared.streams.settings import StreamSettings

    settings = settings_of(StreamSettings)
    by_hub: dict[str, Stream] = {settings.telemetry_hub_name: "telemetry", settings.inference_hub_name: "inference"}
    if hub == settings.command_responses_hub_name:
        raise ValueError(f"{hub} carries command responses: only the telemetry and inference hubs are replayed")
    if given is None:
        if hub not in by_hub:
            raise ValueError(f"{hub} is neither TELEMETRY_HUB_NAME ({settings.telemetry_hub_name}) nor "
                             f"INFERENCE_HUB_NAME ({settings.inference_hub_name}): give --stream")
        return by_hub[hub]
    if by_hub.get(hub, given) != given:
        raise ValueError(f"{hub} is the {by_hub[hub]} hub (by the app's settings), not {given}")
    return "telemetry" if given == "telemetry" else "inference"


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m tools.replay",
        description="Replay sequence numbers FROM to TO of one Event Hubs partition through the ingest code, "
                    "exactly once (docs/streams.md, 'Failure and replay').")
    parser.add_argument("--hub", required=True, help="the hub (TELEMETRY_HUB_NAME or INFERENCE_HUB_NAME)")
    parser.add_argument("--partition", required=True, help="the partition id")
    parser.add_argument("--from", dest="first", type=int, required=True, help="first sequence number (included)")
    parser.add_argument("--to", dest="last", type=int, required=True, help="last sequence number (included)")
    parser.add_argument("--stream", choices=("telemetry", "inference"),
                        help="what the hub carries (default: by the app's hub settings)")
    parser.add_argument("--consumer-group", default="$Default",
                        help="read through this group (default $Default); not the function's own group")
    parser.add_argument("--connection-string", help="Event Hubs connection string (default: $EventHubConnection)")
    parser.add_argument("--namespace", help="NAME.servicebus.windows.net, signed in with DefaultAzureCredential "
                                            "(default: $EventHubConnection__fullyQualifiedNamespace)")
    parser.add_argument("--settings", type=Path, help="a local.settings.json whose Values fill what the environment "
                                                      "does not set (DataStorage, hub names, ALERT_RULES, ...)")
    parser.add_argument("--batch-size", type=int, default=max_event_batch_size(),
                        help=f"events per batch, at most host.json's maxEventBatchSize ({max_event_batch_size()})")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT_SECONDS,
                        help=f"seconds to wait for the next event before giving up (default {DEFAULT_WAIT_SECONDS:g})")
    return parser, parser.parse_args(argv)


def request_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Request:
    """The request, with the settings it needs checked (``parser.error`` exits 2)."""
    from shared.platform.settings import SettingsError, StorageSettings, reset_settings, settings_of

    if args.settings is not None:
        if not args.settings.is_file():
            parser.error(f"--settings {args.settings}: no such file")
        load_settings_file(args.settings)
    reset_settings()
    if args.first < 0 or args.last < args.first:
        parser.error("--from and --to: 0 <= FROM <= TO")
    if not 1 <= args.batch_size <= max_event_batch_size():
        parser.error(f"--batch-size: 1 to {max_event_batch_size()} (host.json's maxEventBatchSize)")
    if args.wait <= 0:
        parser.error("--wait: more than 0 seconds")
    if args.connection_string and args.namespace:
        parser.error("--connection-string or --namespace, not both")
    connection = args.connection_string or (None if args.namespace else os.environ.get("EventHubConnection"))
    namespace = args.namespace or (None if connection else os.environ.get(
        "EventHubConnection__fullyQualifiedNamespace"))
    if not connection and not namespace:
        parser.error("give --connection-string or --namespace (or set EventHubConnection or "
                     "EventHubConnection__fullyQualifiedNamespace)")
    try:
        settings_of(StorageSettings)
        stream = stream_of(args.hub, args.stream)
    except (SettingsError, ValueError) as error:
        parser.error(str(error))
    return Request(args.hub, args.partition, args.first, args.last, stream, args.consumer_group,
                   connection_string=connection, namespace=namespace, batch_size=args.batch_size, wait=args.wait)


async def run(request: Request, progress: Progress) -> Summary:
    """:func:`replay` with Ctrl-C stopping it between batches (a second Ctrl-C at once),
    and the app's clients closed after it."""
    from shared.alerts.forward import reset_alert_hub
    from shared.platform.storage import reset_data_store

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        print("stopping after the batch in hand (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)  # the next one raises KeyboardInterrupt

    loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        return await replay(request, progress=progress, stop=stop)
    finally:
        with contextlib.suppress(Exception):
            await reset_data_store()
            await reset_alert_hub()


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    from shared.platform.logs import quiet_sdk_loggers

    tty = sys.stdout.isatty()
    console: Any = None
    if tty:
        from rich.console import Console
        from rich.logging import RichHandler

        console = Console()
        logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console)])
    else:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_sdk_loggers()
    # The consumer logs each receive error it hands on_error; the summary says it once.
    logging.getLogger("azure.eventhub").setLevel(logging.CRITICAL)
    request = request_from(parser, args)
    progress: Progress = RichProgress(console) if tty else PlainProgress(sys.stdout)
    started = time.monotonic()
    try:
        summary = asyncio.run(run(request, progress))
    except KeyboardInterrupt:
        print("stopped at once: storage is consistent (every step is idempotent); the summary is unknown: "
              f"replay --from {request.first} --to {request.last} again", file=sys.stderr)
        return EXIT_INTERRUPTED
    for line in summary.lines():
        print(line)
    print(f"in {time.monotonic() - started:.1f} s")
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
