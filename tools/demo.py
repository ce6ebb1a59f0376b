"""``make demo``: the whole system on this machine, in well under a minute.

A short run of the fleet simulator (``python -m tools.simulate``, see its ``--help``)
with the preset below: 20 devices, real MQTT v5 clients on Mosquitto, publish for
8 s with bad, spoofed, redelivered, reordered and dropped traffic; the operator's
commands, an offline device's queue, an idempotent retry, a fleet job, broadcasts
and a disabled client go through the app's HTTP API; then the report and its
checks (exit status 1 when one fails). Azurite keeps the run's data on disk in
``--data`` (``.demo/azurite``, emptied first) with a local function key
(``.demo/key``): ``make serve`` serves that data afterwards, and the demo ends with
curl commands to paste while it runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.platform.timestamps import format_timestamp
from tools.demo_data import DEFAULT, DemoData, Unusable
from tools.serve import DEFAULT_PORT
from tools.simulate import __main__ as simulator
from tools.simulate.fleet import MODEL
from tools.simulate.report import Report

PRESET = ["--devices", "20", "--duration", "8", "--rate", "2", "--seed", "7",
          "--bad", "--spoofed", "--redeliver", "--reorder", "--drop"]


def curl_lines(data: DemoData, report: Report, now: datetime) -> list[str]:
    """Requests to paste while ``make serve`` serves the demo's data: its devices, one
    device with its latest telemetry and inference, its commands, the alerts since
    yesterday, the model's statistics, a new command."""
    device = report.queued.get("deviceId", "sim-000")  # it also has the commands queued while it was offline
    base = f"http://127.0.0.1:{DEFAULT_PORT}/api"
    get = 'curl -sS -H "x-functions-key: $KEY"'
    return [f"KEY=$(cat {shlex.quote(str(data.key_file.resolve()))})",
            f"{get} {base}/devices",
            f"{get} {base}/devices/{device}",
            f"{get} {base}/devices/{device}/commands",
            f"{get} '{base}/alerts?since={format_timestamp((now - timedelta(days=1)).replace(microsecond=0))}'",
            f"{get} {base}/models/{MODEL['name']}/stats",
            f"{get} -H 'Content-Type: application/json' -d '{{\"name\": \"reboot\"}}' {base}/devices/{device}/commands"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT,
                   help="the folder the demo's data is kept in for make serve (default .demo, emptied first)")
    args = p.parse_args(argv)
    data = DemoData(args.data)
    print(f"The fleet simulator: python -m tools.simulate {' '.join(PRESET)}", flush=True)
    try:
        with data.exclusive():
            key = data.reset()  # the API server's key now, and make serve's later
            report = simulator.execute(simulator.parser().parse_args(PRESET), location=data.azurite, key=key)
    except Unusable as exc:
        p.error(str(exc))
    print(f"\nThe demo's data is kept in {data.folder}. Run `make serve` in another terminal (it serves that "
          "data and accepts the demo's key), then paste:\n", flush=True)
    print("\n".join(f"  {line}" for line in curl_lines(data, report, datetime.now(UTC))), flush=True)
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
