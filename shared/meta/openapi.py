"""The OpenAPI 3.1 document of the HTTP API, gathered from the operations each
capability declares (its ``api.py``) and generated from the pydantic models the
handlers serialise, so the document cannot drift from the responses (the tests
validate every response they receive against it)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from shared import __version__
from shared.alerts.api import OPERATIONS as ALERTS
from shared.commands.api import OPERATIONS as COMMANDS
from shared.deadletters.api import OPERATIONS as DEAD_LETTERS
from shared.lifecycle.api import OPERATIONS as DEVICES
from shared.meta.api import OPERATIONS as META
from shared.platform.models import Problem
from shared.platform.operations import Body, Link, Operation
from shared.streams.api import OPERATIONS as STREAMS

OPERATIONS: tuple[Operation, ...] = (*DEVICES, *COMMANDS, *ALERTS, *STREAMS, *DEAD_LETTERS, *META)

_REF = "#/components/schemas/{model}"
# A function key is accepted in either place; one of them satisfies an operation.
SECURITY_SCHEMES = {
    "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
    "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
}
_PROBLEM = {"application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}}
PROBLEMS: dict[int, dict[str, Any]] = {
    400: {"description": "A parameter is invalid; `detail` names it", "content": _PROBLEM},
    # Answered by the Functions host before the function runs: no body is guaranteed.
    401: {"description": "No valid function key (`x-functions-key` header or `code` query parameter)"},
    404: {"description": "The resource the path names does not exist", "content": _PROBLEM},
    # Answered by the platform before the function runs, as 401 is.
    414: {"description": "The URL is longer than the 4 KB (4,096 bytes) Azure Functions takes"},
    409: {"description": "The request conflicts with the resource's state; `detail` says how", "content": _PROBLEM},
    413: {"description": "The request body is too large", "content": _PROBLEM},
    502: {"description": "Publishing was refused (the command is kept, `failed`, with the reason)",
          "content": _PROBLEM},
    500: {"description": "A setting is missing or invalid (`detail` names it), or an unexpected failure",
          "content": _PROBLEM},
    503: {"description": "Storage or the broker is not reachable; try again after `Retry-After` seconds",
          "content": _PROBLEM,
          "headers": {"Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                                      "schema": {"type": "integer", "minimum": 1}}}},
}


class WireSchema(GenerateJsonSchema):
    """Schemas of the wire form. Responses are dumped with ``exclude_none``
    (:meth:`ApiModel.to_json_dict`), so a field that defaults to None is left out
    when unset and is never null; every other field is always sent, so required.
    Used in serialization mode only."""

    def field_is_required(self, field: Any, total: bool) -> bool:
        schema = field["schema"]
        return bool(schema["type"] != "default" or "default" not in schema or schema["default"] is not None)

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if "default" in schema and schema["default"] is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _content(body: Body) -> dict[str, Any]:
    schema = {"$ref": _REF.format(model=body.__name__)} if isinstance(body, type) else body
    return {"application/json": {"schema": schema}}


def _links(links: Mapping[str, Link]) -> dict[str, Any]:
    return {"links": {name: {"operationId": link.operation_id, "parameters": dict(link.parameters),
                             **({"description": link.description} if link.description else {})}
                      for name, link in links.items()}} if links else {}


def _operation(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): {"description": description, "content": _content(body)} | _links(op.links.get(status, {}))
        for status, (description, body) in op.responses.items()
    }
    statuses = (*op.problem_statuses(), 414, *((401,) if op.secured else ()))
    responses |= {str(status): PROBLEMS[status] for status in sorted(statuses)}
    body: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "responses": responses}
    if op.request is not None:
        schema = {"$ref": _REF.format(model=op.request.__name__ + "Input")}
        body["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if op.params:
        body["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.where == "path", "schema": p.schema,
             # The Functions host drops a query parameter with an empty value ("?since="), so
             # the function reads it as absent: OpenAPI's words for that are allowEmptyValue.
             **({"allowEmptyValue": True} if p.where == "query" else {}),
             **({"description": p.description} if p.description else {})}
            for p in op.params
        ]
    body["security"] = [{name: []} for name in SECURITY_SCHEMES] if op.secured else []
    return body


@functools.cache
def openapi_document() -> dict[str, Any]:
    models: dict[str, type[BaseModel]] = {"Problem": Problem}
    for op in OPERATIONS:
        models |= {b.__name__: b for _, b in op.responses.values() if isinstance(b, type)}
    requests = {op.request.__name__: op.request for op in OPERATIONS if op.request is not None}
    _, schemas = models_json_schema([(m, "serialization") for m in models.values()],
                                    by_alias=True, ref_template=_REF, schema_generator=WireSchema)
    if requests:  # the bodies an operation takes, as validated: "{Model}Input"
        _, inputs = models_json_schema([(m, "validation") for m in requests.values()], by_alias=True,
                                       ref_template="#/components/schemas/{model}Input")
        schemas.setdefault("$defs", {}).update({f"{name}Input": s for name, s in inputs.get("$defs", {}).items()})
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Edge Cloud Messaging API", "version": __version__},
        "servers": [{"url": "/api"}],
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {}), "securitySchemes": SECURITY_SCHEMES},
    }

