"""How a capability describes its HTTP operations for the OpenAPI document
(:mod:`shared.meta.openapi` gathers them). Each capability lists its own in its
``api.py``; the problem statuses an operation can answer follow from what it does,
so they are derived here rather than repeated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

# A response body: a model (its schema becomes a component) or a literal JSON Schema.
Body = type[BaseModel] | dict[str, Any]


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query" | "header"
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Operation:
    """One route. ``operation_id`` is the function's name. ``responses`` are the
    operation's own answers (status -> description and body); the problems are
    derived: 400 when it takes parameters, 404 when its path names a resource, 401
    when it needs a function key, 500 and 503 when it answers storage and settings
    failures as problems (``storage``), plus ``problems``."""

    method: str
    path: str
    operation_id: str
    summary: str
    responses: Mapping[int, tuple[str, Body]]
    params: tuple[Param, ...] = ()
    secured: bool = True
    storage: bool = True
    problems: tuple[int, ...] = ()
    # The JSON body it takes (a model, validated as the handler validates it).
    request: type[BaseModel] | None = None

    def problem_statuses(self) -> tuple[int, ...]:
        derived = {400: bool(self.params) or self.request is not None, 404: "{" in self.path,
                   500: self.storage, 503: self.storage}
        return tuple(sorted({*(s for s, applies in derived.items() if applies), *self.problems}))


DEVICE_ID = Param("deviceId", "path", {"type": "string", "minLength": 1, "maxLength": 128},
                  "The MQTT client authentication name, percent-encoded.")
LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
              "The most items in one answer.")
CONTINUATION_TOKEN = Param("continuationToken", "query", {"type": "string"},
                           "The token of the previous page; only tokens this API issued are accepted.")
