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
