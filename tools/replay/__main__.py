"""``python -m tools.replay``: the command, its arguments and settings checked, the
replay run with Ctrl-C between batches, and the summary printed (the package's
docstring says what a replay does)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from standins.invoke import max_event_batch_size
from tools.replay.model import DEFAULT_WAIT_SECONDS, EXIT_INTERRUPTED, Request, Stream, Summary
from tools.replay.progress import PlainProgress, Progress, RichProgress
from tools.replay.replaying import replay


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
