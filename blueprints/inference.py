"""AI inference results from Event Hubs (archive, latest state per model, model
statistics, alerts, dead letters) and the model statistics over HTTP."""

from typing import List  # List, not list: see blueprints/__init__.py

import azure.functions as func

from blueprints.adapters import event_hub_batches, problems

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@event_hub_batches(bp, "inference_ingest", "INFERENCE_HUB_NAME")
async def inference_ingest(events: List[func.EventHubEvent], context: func.Context) -> None:
    from shared.streams.service import ingest

    retry = context.retry_context
    await ingest("inference", events, retry_count=retry.retry_count, max_retry_count=retry.max_retry_count)


@bp.function_name("get_model_stats")
@bp.route(route="models/{modelName}/stats", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def get_model_stats(req: func.HttpRequest) -> func.HttpResponse:
    import re
    from datetime import UTC, datetime

    from shared.platform.errors import InvalidInput, NotFound
    from shared.platform.http import json_response, query_datetime
    from shared.platform.storage import data_store
    from shared.streams.messages import MODEL_NAME_PATTERN
    from shared.streams.stats import model_stats, stats_range

    model = req.route_params.get("modelName") or ""
    if not re.fullmatch(MODEL_NAME_PATTERN, model):
        raise InvalidInput("modelName must be 1-64 of letters, digits, '.', '_' and '-', starting with a "
                           "letter or digit")
    since, until = stats_range(query_datetime(req, "since"), query_datetime(req, "until"), datetime.now(UTC))
    items = await model_stats(data_store(), model, since=since, until=until)
    if items is None:
        raise NotFound(f"no statistics of model {model!r}: no result of it was ever ingested")
    return json_response({"model": model, "items": items})
