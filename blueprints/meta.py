"""The API's own endpoints: health and the OpenAPI document (both anonymous)."""

import azure.functions as func

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    from shared.meta.health import check_health
    from shared.platform.http import json_response

    report = await check_health()
    return json_response(report, status=200 if report["status"] == "ok" else 503)


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi(req: func.HttpRequest) -> func.HttpResponse:
    from shared.meta.openapi import openapi_document
    from shared.platform.http import json_response

    return json_response(openapi_document())
