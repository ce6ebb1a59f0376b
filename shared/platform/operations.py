"""How a capability describes its HTTP operations for the OpenAPI document
(:mod:`shared.meta.openapi` gathers them). Each capability lists its own in its
``api.py``; the problem statuses an operation can answer follow from what it does,
so they are derived here rather than repeated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
class Link:
    """An OpenAPI link: how an answer's values feed another operation (``operation_id``),
    each of its ``parameters`` a runtime expression (``$response.body#/commandId``).
    Clients read them as "what to call next"; schemathesis's stateful phase follows them."""

    operation_id: str
    parameters: Mapping[str, str]
    description: str = ""


def next_page(operation_id: str, *filters: str, path: tuple[str, ...] = ()) -> dict[str, Link]:
    """The link of a listing to its next page: the same filters, the answer's token (a
    token is bound to its query's filters, so a link without them would be refused)."""
    parameters = {name: f"$request.path.{name}" for name in path}
    parameters |= {name: f"$request.query.{name}" for name in filters}
    parameters["continuationToken"] = "$response.body#/continuationToken"
    return {"nextPage": Link(operation_id, parameters, "The page after this one, while continuationToken is given.")}


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
    # Per status of its own answers, the links from it (name -> link).
    links: Mapping[int, Mapping[str, Link]] = field(default_factory=dict)

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
