"""Alerts over HTTP."""

import azure.functions as func

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("list_alerts")
@bp.route(route="alerts", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def list_alerts(req: func.HttpRequest) -> func.HttpResponse:
    from shared.alerts.models import AlertList
    from shared.alerts.store import AlertStore
    from shared.platform.http import json_response, query_datetime, query_int, respond
    from shared.platform.keys import validate_device_id
    from shared.platform.storage import data_store

    async def handle() -> func.HttpResponse:
        device_id = req.params.get("deviceId")
        items = await AlertStore(data_store()).list(
            device_id=validate_device_id(device_id) if device_id is not None else None,
            since=query_datetime(req, "since"),
            limit=query_int(req, "limit", default=100, minimum=1, maximum=1000),
        )
        return json_response(AlertList(items=items))

    return await respond(handle)
