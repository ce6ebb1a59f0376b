"""Alerts over HTTP."""

import azure.functions as func

from blueprints.adapters import problems

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("list_alerts")
@bp.route(route="alerts", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def list_alerts(req: func.HttpRequest) -> func.HttpResponse:
    from shared.alerts.models import AlertList
    from shared.alerts.store import AlertStore
    from shared.platform.http import json_response, query_datetime, query_device_id, query_int
    from shared.platform.storage import data_store

    items = await AlertStore(data_store()).list(
        device_id=query_device_id(req, "deviceId"),
        since=query_datetime(req, "since"),
        limit=query_int(req, "limit", default=100, minimum=1, maximum=1000),
    )
    return json_response(AlertList(items=items))
