"""``python -m tools.simulate``: a simulated fleet against the app, locally."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
from collections.abc import Callable
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
    faults.add_argument("--drop", action="store_true", help="a tenth of the devices drop and reconnect")
    p.add_argument("--storage", metavar="CONNECTION_STRING", help="use this storage (default: Azurite in memory)")
    p.add_argument("--broker", metavar="mqtt://HOST[:PORT]", help="use this broker (default: Mosquitto)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the report as JSON to PATH too")
    return p


async def run(options: Options) -> Report:
    import os

    from shared.commands.transport import reset_transport
    from shared.platform.host_storage import reset_queues
    from shared.platform.storage import reset_data_store
    from tools.serve import run_server

    key = secrets.token_urlsafe(24)
    try:
        async with run_server(port=0, key=key, timer_period=1.0, queue_period=0.5) as server:
            print(f"API server on {server.url} (x-functions-key: {key})", flush=True)
            return await simulate(options, server_url=server.url, key=key, broker_url=os.environ["MQTT_BROKER_URL"])
    finally:
        await reset_transport()
        await reset_queues()
        await reset_data_store()


def main(argv: list[str] | None = None) -> None:
    from tools.serve import services

    args = parser().parse_args(argv)
    options = Options(devices=args.devices, rate=args.rate, duration=args.duration, commands=args.commands,
                      shares=args.behaviours, seed=args.seed, bad=args.bad, spoofed=args.spoofed,
                      redeliver=args.redeliver, reorder=args.reorder, drop=args.drop)
    logging.basicConfig(level=logging.WARNING, format="  [app log] %(message)s", stream=sys.stderr)
    with services(args.storage, args.broker) as lines:
        print("\n".join(lines), flush=True)
        report = asyncio.run(run(options))
    print(report.text(), flush=True)
    if args.json:
        args.json.write_bytes(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2))
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
