"""``python -m tools.bench``: every figure, printed, and last one JSON object of them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from tools.bench import commands, lifecycle, metrics, paths, startup, streams


async def azurite_figures() -> dict[str, float]:
    from shared.platform.settings import reset_settings

    os.environ["AzureWebJobsStorage"] = os.environ["DataStorage"]  # the host's queues in the same Azurite
    reset_settings()
    await startup.store_cold_device()
    figures = await asyncio.to_thread(startup.cold_request_ratio)  # fresh interpreters; this process waits
    figures |= await lifecycle.lifecycle_rates()
    figures |= await streams.stream_figures()
    figures |= await paths.simulator_overhead_ratio()
    figures |= await paths.eventhubs_producer_overhead_ratio()
    return figures | await commands.command_figures()


def main() -> None:
    from standins.invoke import run_against_azurite
    from standins.services import run_mosquitto
    from tools.status import install

    install()  # the app's metrics recorded as make serve records them: their cost is in every figure
    figures: dict[str, Any] = {"python": sys.version.split()[0]}
    figures |= startup.import_ratio()
    with run_mosquitto() as broker:
        figures |= run_against_azurite(azurite_figures, {"MQTT_BROKER_URL": broker.url, "COMMAND_TRANSPORT": "mqtt"})
    figures |= metrics.metrics_figures(figures)
    for module in (startup, lifecycle, streams, paths, commands, metrics):
        print("\n".join(module.describe(figures)))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
