"""What the app's metrics cost (docs/monitoring.md): a batch's tally and emission into
the OpenTelemetry SDK, against the worker CPU of the batch itself, and the one-time
configuration of the Azure Monitor exporter at a process's first emission, against
the cold request."""

from __future__ import annotations

import time
from typing import Any

from tools.bench.startup import fresh_seconds

ROUNDS = 2000
# A fresh worker as deployed (the app imported, the Tables SDK and azure.identity, which
# its managed-identity storage clients import), then its first emission, which
# configures the exporter; the endpoint is never reached (the export runs every 60 s;
# statsbeat off). Without azure.identity imported before, the exporter's import of it
# adds about 110 ms.
FIRST_EMISSION = """
import asyncio, os, time
os.environ["APPLICATIONINSIGHTS_CONNECTION_STRING"] = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/")
os.environ["APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL"] = "true"
import function_app
from azure.data.tables.aio import TableClient
import azure.identity.aio
from shared.platform import metrics
start = time.perf_counter()
metrics.record(metrics.LIFECYCLE, 1, kind="connected")
print(time.perf_counter() - start, flush=True)
os._exit(0)  # no export at exit: the endpoint is a closed port
"""


def batch_emission_us() -> float:
    """Worker CPU of one telemetry batch's records (archived, lag, two dead-letter
    reasons; redelivered 0 is no emission) into the SDK, best of 3 rounds."""
    from shared.platform import metrics
    from tools.status import install

    install()
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(ROUNDS):
            with metrics.batch():
                metrics.record(metrics.ARCHIVED, 98, stream="telemetry", partition="0")
                metrics.record(metrics.REDELIVERED, 0, stream="telemetry", partition="0")
                metrics.record(metrics.LAG, 0.4, stream="telemetry", partition="0")
                metrics.record(metrics.DEAD_LETTERED, 1, stream="telemetry", partition="0", reason="unreadable")
                metrics.record(metrics.DEAD_LETTERED, 1, stream="telemetry", partition="0", reason="missing")
        best = min(best, (time.process_time() - start) / ROUNDS * 1e6)
    return best


def metrics_figures(figures: dict[str, Any]) -> dict[str, float]:
    """Needs the stream figures (the fleet shape's worker CPU) and the cold request's."""
    per_batch = batch_emission_us()
    batch_cpu = figures["telemetry_fleet_worker_cpu_us_per_msg"] * 100
    first = min(fresh_seconds(FIRST_EMISSION) for _ in range(3)) * 1000
    return {"metrics_us_per_batch": round(per_batch, 1),
            "metrics_share_of_batch_cpu": round(per_batch / batch_cpu, 4),
            "metrics_first_emission_ms": round(first, 1),
            "metrics_first_emission_to_cold_request_ratio": round(first / figures["cold_request_app_ms"], 3)}


def describe(figures: dict[str, Any]) -> list[str]:
    """What ``make bench`` prints of this module's figures."""
    return [
        f"metrics: {figures['metrics_us_per_batch']} us of CPU per batch, "
        f"{figures['metrics_share_of_batch_cpu']} of a fleet-shaped batch's worker CPU; the exporter's "
        f"configuration at a process's first emission {figures['metrics_first_emission_ms']} ms, "
        f"{figures['metrics_first_emission_to_cold_request_ratio']} of a cold request (once per process)",
    ]
