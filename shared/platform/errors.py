"""Exceptions that carry a reason a user can act on."""

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
