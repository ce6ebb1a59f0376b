"""Cold start: importing the app, and its first request in a fresh worker process."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from standins.services import ROOT

if TYPE_CHECKING:

    pass


REPEATS = 7
COLD_DEVICE = "cold-start-device"

# Both sides start their clock after asyncio is imported and a loop exists, and the
# app's side after the worker runtime is imported: the worker process has all three
# before the host's init request makes it load the app. The app's side is timed from
# that init (indexing imports function_app) through one get_device invocation, as the
# host sends it. Clients are closed after the clock.
APP_COLD_REQUEST = """
import asyncio, time
import azure_functions_runtime
from standins import triggers
from standins.host import Host
loop = asyncio.new_event_loop()
start = time.perf_counter()
host = Host()
value = loop.run_until_complete(host.invoke("get_device", triggers.http_request(
    method="GET", url="http://localhost/api/devices/{device}", headers={{}}, query={{}},
    params={{"deviceId": "{device}"}}, body=b"")))
elapsed = time.perf_counter() - start
response = triggers.http_result(value)
assert response.status == 200, response.body
from shared.platform.storage import reset_data_store
loop.run_until_complete(reset_data_store())
print(elapsed)
"""
NAIVE_COLD_REQUEST = """
import asyncio, os, time
loop = asyncio.new_event_loop()
start = time.perf_counter()
import azure.functions
from azure.data.tables.aio import TableClient
client = TableClient.from_connection_string(os.environ["DataStorage"], table_name="{table}")
entity = loop.run_until_complete(client.get_entity("{partition}", "{row}"))
elapsed = time.perf_counter() - start
assert entity["deviceId"] == "{device}", entity
loop.run_until_complete(client.close())
print(elapsed)
"""
def fresh_seconds(code: str, env: dict[str, str] | None = None) -> float:
    """Run ``code`` in a fresh interpreter with a clean environment; it prints seconds."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                         env={"PATH": os.environ.get("PATH", ""), **(env or {})},
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"a fresh interpreter failed: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def import_seconds(module: str) -> float:
    return fresh_seconds(f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)")


def import_ratio() -> dict[str, float]:
    base, app = [], []
    for _ in range(REPEATS):  # interleaved, so drift hits both alike
        base.append(import_seconds("azure.functions"))
        app.append(import_seconds("function_app"))
    return {"import_azure_functions_ms": round(min(base) * 1000, 1),
            "import_function_app_ms": round(min(app) * 1000, 1),
            "import_ratio": round(min(app) / min(base), 3)}


async def store_cold_device() -> None:
    """The device both sides of ``cold_request_ratio`` read, written once through the app."""
    from standins import event_factory as ev
    from standins.invoke import user_function

    handler = user_function("client_lifecycle")
    at = datetime(2026, 11, 20, tzinfo=UTC)
    await handler(ev.created_or_updated(COLD_DEVICE, at, attributes={"site": "bench"}))
    await handler(ev.connected(COLD_DEVICE, 1, at + timedelta(minutes=1)))


def cold_request_ratio() -> dict[str, float]:
    from shared.lifecycle.registry import REGISTRY_ROW
    from shared.platform.keys import device_key
    from shared.platform.storage_names import DEVICES_TABLE

    env = {"DataStorage": os.environ["DataStorage"]}
    app_code = APP_COLD_REQUEST.format(device=COLD_DEVICE)
    naive_code = NAIVE_COLD_REQUEST.format(table=DEVICES_TABLE, partition=device_key(COLD_DEVICE), row=REGISTRY_ROW,
                                           device=COLD_DEVICE)
    naive, app = [], []
    for _ in range(REPEATS):  # interleaved, so drift hits both alike
        naive.append(fresh_seconds(naive_code, env))
        app.append(fresh_seconds(app_code, env))
    return {"cold_request_naive_ms": round(min(naive) * 1000, 1),
            "cold_request_app_ms": round(min(app) * 1000, 1),
            "cold_request_ratio": round(min(app) / min(naive), 3)}


def describe(figures: dict[str, Any]) -> list[str]:
    """What ``make bench`` prints of this module's figures."""
    return [
        f"import: function_app {figures['import_function_app_ms']} ms, azure.functions "
        f"{figures['import_azure_functions_ms']} ms, ratio {figures['import_ratio']} (target <= 1.6)",
        f"cold request: function_app + get_device {figures['cold_request_app_ms']} ms, azure.functions + "
        f"TableClient + get_entity {figures['cold_request_naive_ms']} ms, ratio {figures['cold_request_ratio']} "
        "(target <= 1.3)",
    ]
