"""HTTP plumbing shared by the blueprints: JSON and problem+json responses, query
parameters, and one place that turns exceptions into RFC 9457 problems: the
domain's errors (``shared.platform.errors``) by ``PROBLEMS``, any other by kind.

Query parameters are exactly as strict as docs/api.md says: a parameter given with
an empty value is an error, not the default (leave it out for the default);
integers are plain ASCII decimal digits without sign, spaces, underscores or
leading zeros; booleans are ``true`` or ``false``; date-times are RFC 3339 with a
zone (:func:`shared.platform.timestamps.parse_timestamp`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from http import HTTPStatus
from typing import Any

import azure.functions as func
import orjson

from shared.platform.errors import (
    ConfigurationError,
    Conflict,
    Contention,
    InvalidInput,
    NotFound,
    PublishRefused,
    TooLarge,
    Unavailable,
    is_transient,
    validate,
)
from shared.platform.rows import MAX_JSON_DEPTH, nests_deeper

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 5

_INTEGER = re.compile(r"0|[1-9][0-9]*")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# An offset whose "+" the client did not encode as %2B arrives decoded as a space.
_DECODED_PLUS = re.compile(r" [0-9]{2}:[0-9]{2}\Z")


# Each domain error's status; the title is the status's phrase, the detail the error's
# message, ``errors`` an InvalidInput's field errors, ``Retry-After`` a 503's wait.
PROBLEMS: dict[type[Exception], int] = {
    InvalidInput: 400,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    PublishRefused: 502,
    Unavailable: 503,
    Contention: 503,
}


def domain_problem(exc: Exception) -> func.HttpResponse | None:
    """The problem+json answer to a domain error; None for any other exception."""
    status = next((PROBLEMS[kind] for kind in type(exc).__mro__ if kind in PROBLEMS), None)
    if status is None:
        return None
    errors = exc.errors if isinstance(exc, InvalidInput) else None
    wait = getattr(exc, "retry_after", None) or RETRY_AFTER_SECONDS
    headers = {"Retry-After": str(wait)} if status == 503 else None
    return problem(status, HTTPStatus(status).phrase, str(exc), errors=errors or None, headers=headers)


def request_json(req: func.HttpRequest, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The request's JSON body: 413 beyond ``max_bytes``, 400 when it is not JSON or
    nests arrays and objects more than ``max_depth`` levels deep."""
    body = req.get_body() or b""
    if len(body) > max_bytes:
        raise TooLarge(f"the request body is {len(body)} bytes, more than {max_bytes}")
    if not body.strip():
        raise InvalidInput("the request needs a JSON body")
    too_deep = InvalidInput(f"the request body nests arrays or objects more than {max_depth} levels deep")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson's own bound, 1024
            raise too_deep from None
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    # Fewer brackets than levels allowed cannot nest too deep: most bodies skip the walk.
    if body.count(b"[") + body.count(b"{") > max_depth and nests_deeper(value, max_depth):
        raise too_deep
    return value


def within_bytes(value: Any, *, max_bytes: int, what: str) -> None:
    """413 when ``value`` takes more than ``max_bytes`` as JSON (how it is stored and
    published): the body's own bound leaves room for the fields around it."""
    size = len(orjson.dumps(value))
    if size > max_bytes:
        raise TooLarge(f"{what} is {size} bytes as JSON, more than {max_bytes}")


def validated(model: Any, data: Any) -> Any:
    """``data`` as an instance of the pydantic ``model``; 400 with field errors otherwise."""
    return validate(model, data, what="request", loc=("body",))


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
    except ConfigurationError as exc:  # its message names the setting, never its value
        log.error("configuration error: %s", exc)
        return problem(500, "Configuration Error", str(exc))
    except Exception as exc:
        answer = domain_problem(exc)
        if answer is not None:
            return answer
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


def _bad(name: str, rule: str, where: str = "query") -> InvalidInput:
    """A 400 naming parameter ``name`` (of the query or the path) and the rule its value broke."""
    return InvalidInput(f"{name} {rule}", errors=[{"loc": [where, name], "msg": rule, "type": "value_error"}])


def _param(req: func.HttpRequest, name: str, rule: str) -> str | None:
    """The raw value of ``name``, None when absent; an empty value breaks ``rule``."""
    raw: str | None = req.params.get(name)
    if raw == "":
        raise _bad(name, f"{rule}; leave it out rather than send it empty")
    return raw


def query_int(req: func.HttpRequest, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """A whole number from ``minimum`` to ``maximum`` in plain decimal digits
    (``0`` or ``[1-9][0-9]*``: no sign, space, underscore, leading zero or
    non-ASCII digit), ``default`` when absent."""
    rule = f"must be a whole number between {minimum} and {maximum} in ASCII digits"
    raw = _param(req, name, rule)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise _bad(name, rule)
    # Without leading zeros a longer string is a larger number (and int() never sees thousands of digits).
    if len(raw) > len(str(maximum)) or not minimum <= int(raw) <= maximum:
        raise _bad(name, f"must be between {minimum} and {maximum}")
    return int(raw)


def query_bool(req: func.HttpRequest, name: str) -> bool | None:
    """``true`` or ``false`` exactly; None when absent."""
    raw = _param(req, name, "must be true or false")
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise _bad(name, "must be true or false")
    return raw == "true"


def query_choice(req: func.HttpRequest, name: str, allowed: tuple[str, ...]) -> str | None:
    """One of ``allowed`` exactly; None when absent."""
    rule = "must be one of " + ", ".join(allowed)
    raw = _param(req, name, rule)
    if raw is not None and raw not in allowed:
        raise _bad(name, rule)
    return raw


def query_text(req: func.HttpRequest, name: str, *, max_length: int) -> str | None:
    """Any text of 1 to ``max_length`` characters; None when absent."""
    rule = f"must be 1 to {max_length} characters"
    raw = _param(req, name, rule)
    if raw is not None and len(raw) > max_length:
        raise _bad(name, rule)
    return raw


def header_text(req: func.HttpRequest, name: str, *, max_length: int) -> str | None:
    """Header ``name``: any text of 1 to ``max_length`` characters; None when absent
    (an empty value is a 400, as for a query parameter)."""
    raw: str | None = req.headers.get(name)
    if raw is not None and not 1 <= len(raw) <= max_length:
        raise _bad(name, f"must be 1 to {max_length} characters"
                         + ("; leave it out rather than send it empty" if raw == "" else ""), "header")
    return raw


def query_datetime(req: func.HttpRequest, name: str) -> datetime | None:
    """An RFC 3339 date-time with a zone, in UTC; None when absent."""
    from shared.platform.timestamps import parse_timestamp

    raw = _param(req, name, "must be an RFC 3339 date-time with a time zone")
    if raw is None:
        return None
    if _DECODED_PLUS.search(raw):
        raise _bad(name, "has a space where its UTC offset's sign should be: send '+' as %2B "
                         "(an unencoded '+' in a query decodes to a space)")
    try:
        return parse_timestamp(raw, field=name)
    except InvalidInput as exc:
        raise _bad(name, exc.reason.removeprefix(f"{name} ")) from None


def query_device_id(req: func.HttpRequest, name: str) -> str | None:
    """A device id given as query parameter ``name``; None when absent."""
    from shared.platform.keys import validate_device_id

    raw: str | None = req.params.get(name)
    if raw is None:
        return None
    try:
        return validate_device_id(raw)
    except InvalidInput as exc:
        raise _bad(name, exc.reason.removeprefix("device id ")) from None


def route_choice(req: func.HttpRequest, name: str, allowed: tuple[str, ...]) -> str:
    """Route parameter ``name``: one of ``allowed`` exactly."""
    raw: str | None = req.route_params.get(name)
    if raw is None or raw not in allowed:
        raise _bad(name, "must be one of " + ", ".join(allowed), "path")
    return raw


def route_param(req: func.HttpRequest, name: str, check: Callable[[str], object]) -> str:
    """Route parameter ``name``, which ``check`` accepts (its InvalidInput names the rule broken)."""
    raw: str = req.route_params.get(name) or ""
    try:
        check(raw)
    except InvalidInput as exc:
        raise _bad(name, exc.reason.removeprefix(f"{name} "), "path") from None
    return raw


def route_uuid(req: func.HttpRequest, name: str) -> str:
    """Route parameter ``name`` as a UUID in its 36-character form, lowercased (RFC 9562
    reads UUIDs in either case), for the lookup to say 404; anything else is a 400
    naming it at once, never a key handed to storage (``a/b`` made the Table service
    fail, a 503 after 5 s of retries)."""
    raw: str = req.route_params.get(name) or ""
    if not _UUID.fullmatch(raw):
        raise _bad(name, "must be a UUID as this API issued it (8-4-4-4-12 hexadecimal digits)", "path")
    return raw.lower()


def route_device_id(req: func.HttpRequest, *, commandable: bool = False) -> str:
    """The ``{deviceId}`` route parameter, checked (the host has percent-decoded it);
    ``commandable``: one that can stand as an MQTT topic level, as the command routes
    need (a device whose id cannot has no commands: 400, not an empty list)."""
    from shared.platform.keys import validate_commandable_device_id, validate_device_id

    device_id = req.route_params.get("deviceId")
    return validate_commandable_device_id(device_id) if commandable else validate_device_id(device_id)
