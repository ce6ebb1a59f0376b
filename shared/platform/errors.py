"""Exceptions that carry a reason a user can act on: the domain's errors.

The domain raises these and never names an HTTP status; ``shared.platform.http``
maps each to its problem+json answer, in one table (``PROBLEMS``).
"""

from __future__ import annotations

from typing import Any


class ConfigurationError(RuntimeError):
    """A setting is missing or invalid; the message names it."""


class InvalidInput(ValueError):
    """Input that can never be processed: bad request body, malformed event.

    ``errors`` lists field-level problems (pydantic's shape: loc, msg, type).
    """

    def __init__(self, reason: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or []


class NotFound(LookupError):
    """The resource asked for does not exist: a device, a command, a fleet job, a
    dead letter that the registry or storage does not hold."""


class Conflict(Exception):
    """The request is valid but the resource's state refuses it: a device deleted,
    disabled or offline under ``reject``, a command already terminal, an
    Idempotency-Key reused with another body, a fleet target that matches no device."""


class TooLarge(Exception):
    """The request, or a value in it, is larger than the app stores or publishes."""


class PublishRefused(Exception):
    """Publishing to the broker failed in a way a retry cannot mend; what was to be
    published is kept (a command as ``failed``, with the reason)."""


class Unavailable(Exception):
    """A service the request needs (the broker) is unreachable or failed for now;
    retrying after ``retry_after`` seconds (None: the app's default) may succeed."""

    def __init__(self, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Contention(RuntimeError):
    """What storage holds kept changing under a conditional write (another writer won
    every time, or a remove met an add): the invocation fails, and its retry decides
    again on what storage holds then; over HTTP, a 503 to try again in a second. The
    one error of every such loop (:func:`shared.platform.rows.contended`)."""

    retry_after = 1


# Statuses that a later attempt may not meet again: timeouts, throttling, the service's own failures.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    """Whether retrying could succeed: the service was unreachable, throttled us or
    failed, rather than refused the request for what it is (a 400 for an entity too
    large, a 403 for a missing role). Only transient failures should fail an event
    invocation (so the host retries) or answer 503."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, ServiceRequestError | ServiceResponseError | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, HttpResponseError):
        return exc.status_code is None or exc.status_code in TRANSIENT_STATUSES
    return False


def validate(model: Any, data: Any, *, what: str, loc: tuple[str, ...] = ()) -> Any:
    """``data`` as an instance of the pydantic ``model``; otherwise InvalidInput
    saying ``invalid {what}: {where}: {why}`` with every field error (at most 20,
    without the input, their ``loc`` under ``loc``)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": [*loc, *e["loc"]], "msg": str(e["msg"]).removeprefix("Value error, "), "type": e["type"]}
                  for e in exc.errors(include_url=False, include_context=False, include_input=False)][:20]
        where = ".".join(str(part) for part in errors[0]["loc"][len(loc):]) or what
        raise InvalidInput(f"invalid {what}: {where}: {errors[0]['msg']}", errors) from None
