"""Telemetry from Event Hubs: archive, latest state, alerts, dead letters."""

from typing import Any, List  # List, not list: see blueprints/__init__.py

import azure.functions as func

bp = func.Blueprint()  # type: ignore[no-untyped-call]

# Why 8: a batch is retried for about 15 minutes (5 s doubling to at most 5 min),
# which rides out throttling and short storage outages while the partition waits;
# after the last retry the batch goes to dead letters, so the partition moves on
# and nothing is dropped (shared/streams/service.py).
RETRY: dict[str, Any] = {"strategy": "exponential_backoff", "max_retry_count": "8", "minimum_interval": "00:00:05",
         "maximum_interval": "00:05:00"}


@bp.function_name("telemetry_ingest")
@bp.event_hub_message_trigger(arg_name="events", event_hub_name="%TELEMETRY_HUB_NAME%",
                              connection="EventHubConnection", consumer_group="%EVENTHUB_CONSUMER_GROUP%",
                              cardinality=func.Cardinality.MANY, data_type=func.DataType.BINARY)
@bp.retry(**RETRY)
async def telemetry_ingest(events: List[func.EventHubEvent], context: func.Context) -> None:
    from shared.streams.service import ingest

    retry = context.retry_context
    await ingest("telemetry", events, retry_count=retry.retry_count, max_retry_count=retry.max_retry_count)
