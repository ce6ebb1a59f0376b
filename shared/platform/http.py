"""HTTP plumbing shared by the blueprints: JSON and problem+json responses, query
parameters, and one place that turns exceptions into RFC 9457 problems."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import azure.functions as func
import orjson

from shared.platform.errors import ConfigurationError, InvalidInput, is_transient

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 5


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
    """Run ``handler``; map whatever it raises to a problem response. Only what a
    client can act on reaches the body: never a service's message or a traceback."""
    from azure.core.exceptions import AzureError

    try:
        return await handler()
    except InvalidInput as exc:
        return problem(400, "Bad Request", exc.reason, errors=exc.errors or None)
    except NotFound as exc:
        return problem(404, "Not Found", str(exc))
    except ConfigurationError as exc:  # its message names the setting, never its value
        log.error("configuration error: %s", exc)
        return problem(500, "Configuration Error", str(exc))
    except Exception as exc:
        if is_transient(exc):
            log.warning("storage is not reachable or failed", exc_info=True)
            return problem(503, "Service Unavailable",
                           f"storage is not reachable or failed ({type(exc).__name__}); retry later",
                           headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        if isinstance(exc, AzureError):  # storage refused the request; a retry meets the same answer
            status = getattr(exc, "status_code", None)
            log.exception("storage refused the request (status %s)", status)
            return problem(500, "Internal Server Error",
                           "storage refused the request" + (f" (status {status})" if status else ""))
        log.exception("unhandled error")
        return problem(500, "Internal Server Error")


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
