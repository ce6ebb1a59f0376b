"""``python -m tools.simulate``: a simulated fleet against the app, locally."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

import tools.simulate
from tools.simulate.fleet import BEHAVIOURS, DEFAULT_SHARES
from tools.simulate.local import Options, simulate
from tools.simulate.report import Report


def shares(text: str) -> dict[str, float]:
    """``succeed=0.7,fail=0.1,...``: each behaviour's share of the devices."""
    found: dict[str, float] = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name.strip() not in BEHAVIOURS:
            raise argparse.ArgumentTypeError(f"--behaviours: {name.strip()!r} is none of {', '.join(BEHAVIOURS)}")
        try:
            found[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--behaviours: the share of {name.strip()} is not a number") from None
        if found[name.strip()] < 0:
            raise argparse.ArgumentTypeError(f"--behaviours: the share of {name.strip()} is negative")
    if not any(found.values()):
        raise argparse.ArgumentTypeError("--behaviours: give one share above 0 at least")
    return found


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.simulate", description=tools.simulate.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=positive(int), default=20, help="simulated devices (default 20)")
    p.add_argument("--rate", type=positive(float), default=1.0, help="messages per second per device (default 1)")
    p.add_argument("--duration", type=positive(float), default=10.0, help="seconds of publishing (default 10)")
    p.add_argument("--commands", type=int, help="commands sent (default: one per two devices, 4 at least)")
    p.add_argument("--behaviours", type=shares, default=DEFAULT_SHARES,
                   help="shares of the devices' answers to commands (default "
                        + ",".join(f"{b}={s}" for b, s in DEFAULT_SHARES.items()) + ")")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    faults = p.add_argument_group("faults")
    faults.add_argument("--bad", action="store_true", help="broken JSON, a NaN, a timestamp without a zone")
    faults.add_argument("--spoofed", action="store_true", help="messages claiming another device's id")
    faults.add_argument("--redeliver", action="store_true", help="overlapping redeliveries of partitions")
    faults.add_argument("--reorder", action="store_true", help="life cycle events duplicated and shuffled")
    faults.add_argument("--drop", action="store_true",
                        help="a tenth of the devices lose their connection (socket cut) and reconnect")
    faults.add_argument("--pause-storage", action="store_true", help="Azurite paused (SIGSTOP) for 2 s")
    faults.add_argument("--pause-broker", action="store_true", help="Mosquitto paused (SIGSTOP) for 2 s")
    p.add_argument("--storage", metavar="CONNECTION_STRING", help="use this storage (default: Azurite in memory)")
    p.add_argument("--broker", metavar="mqtt://HOST[:PORT]", help="use this broker (default: Mosquitto)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the report as JSON to PATH too")
    return p


@contextlib.contextmanager
def services(storage: str | None, broker: str | None, *, location: Path | None = None,
             ) -> Iterator[tuple[list[str], dict[str, int]]]:
    """As :func:`tools.serve.services`, also yielding the started services' processes
    (``storage``, ``broker``) for the pause faults; the Azurite started keeps its data
    in the folder ``location`` when given (in memory otherwise)."""
    from shared.platform.settings import reset_settings
    from tools.services import run_azurite, run_mosquitto

    with contextlib.ExitStack() as stack:
        lines, pids = [], {}
        if storage is None:
            azurite = stack.enter_context(run_azurite(location=location))
            storage, pids["storage"] = azurite.connection_string, azurite.pid
            kept = "in memory" if location is None else f"its data kept in {location}"
            lines.append(f"Azurite ({kept}) on 127.0.0.1: blob {azurite.blob_port}, queue {azurite.queue_port}, "
                         f"table {azurite.table_port}")
        if broker is None:
            mosquitto = stack.enter_context(run_mosquitto())
            broker, pids["broker"] = mosquitto.url, mosquitto.pid
            lines.append(f"Mosquitto (MQTT v5) on {broker}")
        os.environ.update({"DataStorage": storage, "AzureWebJobsStorage": storage, "MQTT_BROKER_URL": broker,
                           "COMMAND_TRANSPORT": "mqtt"})
        reset_settings()
        yield lines, {name: pid for name, pid in pids.items() if pid is not None}


async def run(options: Options, pids: dict[str, int]) -> Report:
    from shared.commands.transport import reset_transport
    from shared.platform.host_storage import reset_queues
    from shared.platform.storage import reset_data_store
    from tools.serve import run_server

    key = secrets.token_urlsafe(24)
    try:
        async with run_server(port=0, key=key, timer_period=1.0, queue_period=0.5) as server:
            print(f"API server on {server.url} (x-functions-key: {key})", flush=True)
            return await simulate(options, server_url=server.url, key=key,
                                  broker_url=os.environ["MQTT_BROKER_URL"], pids=pids)
    finally:
        await reset_transport()
        await reset_queues()
        await reset_data_store()


def execute(args: argparse.Namespace, *, location: Path | None = None) -> Report:
    """The simulation ``args`` (parsed by :func:`parser`) describe, with its services'
    lines, progress and report printed; Azurite keeps its data in ``location`` when given."""
    options = Options(devices=args.devices, rate=args.rate, duration=args.duration, commands=args.commands,
                      shares=args.behaviours, seed=args.seed, bad=args.bad, spoofed=args.spoofed,
                      redeliver=args.redeliver, reorder=args.reorder, drop=args.drop,
                      pause_storage=args.pause_storage, pause_broker=args.pause_broker)
    logging.basicConfig(level=logging.WARNING, format="  [app log] %(message)s", stream=sys.stderr)
    with services(args.storage, args.broker, location=location) as (lines, pids):
        print("\n".join(lines), flush=True)
        report = asyncio.run(run(options, pids))
    print(report.text(), flush=True)
    if args.json:
        args.json.write_bytes(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2))
    return report


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if args.pause_storage and args.storage:
        p.error("--pause-storage pauses the Azurite the simulator starts: not with --storage")
    if args.pause_broker and args.broker:
        p.error("--pause-broker pauses the Mosquitto the simulator starts: not with --broker")
    sys.exit(0 if execute(args).ok else 1)


if __name__ == "__main__":
    main()
