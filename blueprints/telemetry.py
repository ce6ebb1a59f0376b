"""Telemetry from Event Hubs: archive, latest state, alerts, dead letters."""

from typing import List  # List, not list: see blueprints/__init__.py

import azure.functions as func

from blueprints.adapters import event_hub_batches

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@event_hub_batches(bp, "telemetry_ingest", "TELEMETRY_HUB_NAME")
async def telemetry_ingest(events: List[func.EventHubEvent], context: func.Context) -> None:
    from shared.streams.service import ingest

    retry = context.retry_context
    await ingest("telemetry", events, retry_count=retry.retry_count, max_retry_count=retry.max_retry_count)
