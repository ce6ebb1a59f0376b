"""Device registry over HTTP: list and read devices."""

import azure.functions as func

from blueprints.adapters import problems

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("list_devices")
@bp.route(route="devices", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def list_devices(req: func.HttpRequest) -> func.HttpResponse:
    import orjson

    from shared.lifecycle.registry import DeviceRegistry
    from shared.platform.http import json_response, query_bool, query_int
    from shared.platform.storage import data_store

    items, token = await DeviceRegistry(data_store()).list(
        connected=query_bool(req, "connected"),
        limit=query_int(req, "limit", default=100, minimum=1, maximum=1000),
        continuation_token=req.params.get("continuationToken"),
    )
    page = {"items": [orjson.Fragment(doc) for doc in items]}  # stored as the API returns them
    return json_response(page | ({"continuationToken": token} if token else {}))


@bp.function_name("get_device")
@bp.route(route="devices/{deviceId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def get_device(req: func.HttpRequest) -> func.HttpResponse:
    import orjson

    from shared.lifecycle.registry import DeviceRegistry
    from shared.platform.errors import NotFound
    from shared.platform.http import json_response, route_device_id
    from shared.platform.storage import data_store
    from shared.streams.state import combine

    device_id = route_device_id(req)
    document = await DeviceRegistry(data_store()).document(device_id, combine=combine)
    if document is None:
        raise NotFound(f"no device {device_id!r}")
    return json_response(orjson.Fragment(document))
