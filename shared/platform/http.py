"""HTTP plumbing shared by the blueprints: JSON and problem+json responses, query
parameters, and one place that turns exceptions into RFC 9457 problems."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import azure.functions as func
import orjson

from shared.platform.errors import ConfigurationError, InvalidInput

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class NotFound(LookupError):
    """The resource the route names does not exist."""


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    if hasattr(body, "to_json_dict"):
        body = body.to_json_dict()
    return func.HttpResponse(orjson.dumps(body), status_code=status, mimetype="application/json",
                             headers=headers)


def problem(status: int, title: str, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> func.HttpResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    return func.HttpResponse(orjson.dumps(body, default=str), status_code=status, mimetype=PROBLEM_JSON,
                             headers=headers)


async def respond(handler: Callable[[], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    """Run ``handler``; map what it raises to a problem response."""
    from azure.core.exceptions import AzureError

    try:
        return await handler()
    except InvalidInput as exc:
        return problem(400, "Bad Request", exc.reason, errors=exc.errors or None)
    except NotFound as exc:
        return problem(404, "Not Found", str(exc))
    except ConfigurationError as exc:
        log.error("configuration error: %s", exc)
        return problem(500, "Configuration Error", str(exc))
    except AzureError as exc:
        log.exception("storage failed")
        return problem(503, "Service Unavailable", f"storage is not reachable: {type(exc).__name__}",
                       headers={"Retry-After": "5"})


def query_int(req: func.HttpRequest, name: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = req.params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, not {raw!r}") from None
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{name} must be between {minimum} and {maximum}")
    return value


def query_bool(req: func.HttpRequest, name: str) -> bool | None:
    raw = req.params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise InvalidInput(f"{name} must be true or false, not {raw!r}")


def query_datetime(req: func.HttpRequest, name: str) -> datetime | None:
    raw = req.params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name} must be an RFC 3339 date-time, not {raw!r}") from None
    if value.tzinfo is None:
        raise InvalidInput(f"{name} must carry a time zone (e.g. 2026-11-20T08:00:00Z)")
    return value


def route_device_id(req: func.HttpRequest) -> str:
    """The ``{deviceId}`` route parameter, checked (the host has percent-decoded it)."""
    from shared.platform.keys import validate_device_id

    return validate_device_id(req.route_params.get("deviceId"))
