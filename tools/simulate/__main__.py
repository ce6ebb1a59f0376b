"""``python -m tools.simulate``: a simulated fleet against the app, locally or (``--azure``)
against a deployment made by ``azd up``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

import tools.simulate
from tools.simulate.fleet import BEHAVIOURS, DEFAULT_SHARES, Shape
from tools.simulate.local import simulate
from tools.simulate.operator import Options
from tools.simulate.report import Report
from tools.simulate.target import ARM_URL, SETTINGS


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


def share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def at_least_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is below 0")
    return value


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
    shape = p.add_argument_group("what the devices publish")
    shape.add_argument("--inference-share", type=share, default=Shape.inference_share, metavar="SHARE",
                       help="the share of inference results among the messages, 0 to 1 (default 1/3)")
    shape.add_argument("--metrics", type=positive(int), default=Shape.metrics, metavar="N",
                       help="metrics per telemetry message: cpuTemp, fps, then m3, m4... (default 2)")
    shape.add_argument("--detections", type=at_least_zero, default=Shape.detections, metavar="N",
                       help="the most detections per inference result, 0 to N at random (default 3)")
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
    azure = p.add_argument_group(
        "Azure mode", "--azure runs the fleet against a deployment made by `azd up`: its names come from the azd "
        "environment (.azure/ENV/.env; ENV from --env, AZURE_ENV_NAME or .azure/config.json), each overridable by "
        "the flag below. Only --bad and --spoofed of the faults apply. Signs in with DefaultAzureCredential "
        "(azd or Azure CLI login).")
    azure.add_argument("--azure", action="store_true", help="simulate against the deployment, not locally")
    azure.add_argument("--via", choices=("eventhubs", "mqtt"), default="eventhubs",
                       help="eventhubs (default): no MQTT, routed CloudEvents sent straight to the hubs; mqtt: "
                            "devices connect to the Event Grid MQTT broker with X.509 certificates")
    azure.add_argument("--env", metavar="NAME", help="the azd environment (default: AZURE_ENV_NAME, else azd's)")
    azure.add_argument("--project-dir", type=Path, default=Path.cwd(), metavar="DIR",
                       help="where .azure/ is (default: the current directory)")
    for name, variable, flag in SETTINGS:
        azure.add_argument(flag, dest=name, metavar=variable,
                           help=f"default: {variable} of the azd environment, else of the process environment")
    azure.add_argument("--arm-url", default=ARM_URL, help=f"Azure Resource Manager (default {ARM_URL})")
    azure.add_argument("--settle", type=positive(float), default=120.0,
                       help="seconds to wait at most for the messages to be stored and the commands to end (120)")
    azure.add_argument("--device-prefix", metavar="PREFIX",
                       help="device ids PREFIX-000... (default: sim- and six random hex digits, new each run)")
    azure.add_argument("--certificates", type=Path, metavar="DIR",
                       help="--via mqtt: where the devices' keys and certificates are kept (default .simulate/certs)")
    azure.add_argument("--keep-devices", action="store_true",
                       help="--via mqtt: leave the run's clients registered and their certificates here (default: "
                            "both deleted at the end)")
    return p


async def run(options: Options, pids: dict[str, int], key: str | None = None) -> Report:
    from shared.commands.transports import reset_transport
    from shared.platform.host_storage import reset_queues
    from shared.platform.storage import reset_data_store
    from tools.serve import run_server
    from tools.status import figures, install, since

    key = key or secrets.token_urlsafe(24)
    try:
        async with run_server(port=0, key=key, timer_period=1.0, queue_period=0.5) as server:
            print(f"API server on {server.url} (x-functions-key: {key})", flush=True)
            before = figures(install())
            report = await simulate(options, server_url=server.url, key=key,
                                    broker_url=os.environ["MQTT_BROKER_URL"], pids=pids)
            report.add_metrics(since(before, figures(install())))
            return report
    finally:
        await reset_transport()
        await reset_queues()
        await reset_data_store()


def options_of(args: argparse.Namespace) -> Options:
    return Options(devices=args.devices, rate=args.rate, duration=args.duration, commands=args.commands,
                   shares=args.behaviours, seed=args.seed, bad=args.bad, spoofed=args.spoofed,
                   redeliver=args.redeliver, reorder=args.reorder, drop=args.drop,
                   pause_storage=args.pause_storage, pause_broker=args.pause_broker,
                   shape=Shape(inference_share=args.inference_share, metrics=args.metrics,
                               detections=args.detections))


def execute(args: argparse.Namespace, *, location: Path | None = None, key: str | None = None) -> Report:
    """The local simulation ``args`` (parsed by :func:`parser`) describe, with its
    services' lines, progress and report printed; Azurite keeps its data in
    ``location`` when given, and the API server takes ``key`` (default: a random one)."""
    logging.basicConfig(level=logging.WARNING, format="  [app log] %(message)s", stream=sys.stderr)
    from tools.serve import services

    with services(args.storage, args.broker, location=location) as (lines, pids):
        print("\n".join(lines), flush=True)
        report = asyncio.run(run(options_of(args), pids, key))
    show(report, args.json)
    return report


def show(report: Report, json_path: Path | None) -> None:
    """Print the report, and write it as JSON to ``json_path`` when given."""
    print(report.text(), flush=True)
    if json_path:
        json_path.write_bytes(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2))


async def run_azure(options: Options, args: argparse.Namespace, credential: Any = None) -> Report:
    """The Azure mode: the target, the key, the run (``credential``: default
    ``DefaultAzureCredential``)."""
    from tools.simulate.azure import AzureOptions, simulate_azure
    from tools.simulate.target import function_key, resolve

    target = resolve({name: getattr(args, name) for name, _, _ in SETTINGS}, project=args.project_dir,
                     env_name=args.env, environ=os.environ, storage=args.storage, arm_url=args.arm_url)
    azure = AzureOptions(via=args.via, settle=args.settle, prefix=args.device_prefix, certificates=args.certificates,
                         keep_devices=args.keep_devices)
    if credential is not None:
        return await simulate_azure(options, azure, target, key=await function_key(target, credential),
                                    credential=credential)
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity.aio import DefaultAzureCredential

    from tools.simulate.azure import AzureError

    async with DefaultAzureCredential() as default:
        try:
            return await simulate_azure(options, azure, target, key=await function_key(target, default),
                                        credential=default)
        except ClientAuthenticationError as error:
            raise AzureError(f"no Azure sign-in to use: {str(error).splitlines()[0]} (azd auth login, or az login)"
                             ) from None


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if args.azure:
        local_only = [flag for flag in ("redeliver", "reorder", "drop", "pause_storage", "pause_broker", "broker")
                      if getattr(args, flag)]
        if local_only:
            p.error(f"--{local_only[0].replace('_', '-')} is for local mode: in Azure the services are Azure's")
    if args.pause_storage and args.storage:
        p.error("--pause-storage pauses the Azurite the simulator starts: not with --storage")
    if args.pause_broker and args.broker:
        p.error("--pause-broker pauses the Mosquitto the simulator starts: not with --broker")
    if args.azure:
        from tools.simulate.azure import AzureError
        from tools.simulate.target import TargetError

        logging.basicConfig(level=logging.WARNING, format="  [app log] %(message)s", stream=sys.stderr)
        try:
            report = asyncio.run(run_azure(options_of(args), args))
        except (TargetError, AzureError) as error:
            print(f"python -m tools.simulate --azure: {error}", file=sys.stderr, flush=True)
            sys.exit(2)
        show(report, args.json)
        sys.exit(0 if report.ok else 1)
    from tools.simulate.local import StorageInUse

    try:
        sys.exit(0 if execute(args).ok else 1)
    except StorageInUse as error:
        print(f"python -m tools.simulate: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
