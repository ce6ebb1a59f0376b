"""The OpenAPI 3.1 document of the HTTP API, generated from the pydantic models the
handlers serialise, so the document cannot drift from the responses."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared import __version__
from shared.alerts.models import AlertList
from shared.lifecycle.models import Device, DevicePage
from shared.meta.models import Health
from shared.platform.models import Problem

_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query" | "header"
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    responses: dict[int, type[BaseModel] | None]
    params: tuple[Param, ...] = ()
    secured: bool = True
    problems: tuple[int, ...] = field(default=(400,))


_DEVICE_ID = Param("deviceId", "path", {"type": "string", "minLength": 1, "maxLength": 128},
                   "The MQTT client authentication name, percent-encoded.")
_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/devices", "list_devices", "List devices in the registry", {200: DevicePage}, (
        Param("connected", "query", {"type": "boolean"}, "Only devices that are (or are not) connected."),
        _LIMIT,
        Param("continuationToken", "query", {"type": "string"}, "From the previous page."),
    )),
    Operation("get", "/devices/{deviceId}", "get_device", "Read one device", {200: Device}, (_DEVICE_ID,),
              problems=(400, 404)),
    Operation("get", "/alerts", "list_alerts", "List alerts, newest first", {200: AlertList}, (
        Param("deviceId", "query", {"type": "string"}),
        Param("since", "query", {"type": "string", "format": "date-time"}, "Default: 7 days ago."),
        _LIMIT,
    )),
    Operation("get", "/health", "health", "Settings and storage reachability (storage probed every few seconds)",
              {200: Health, 503: Health},
              secured=False, problems=()),
    Operation("get", "/openapi.json", "openapi", "This document", {200: None}, secured=False, problems=()),
)


def _operation(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, model in op.responses.items():
        content = ({"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}}
                   if model else {"application/json": {"schema": {"type": "object"}}})
        responses[str(status)] = {"description": "OK" if status < 300 else "Unavailable", "content": content}
    for status in (*op.problems, *((401, 503) if op.secured else ())):
        problem_schema = {"schema": {"$ref": _REF.format(model="Problem")}}
        responses[str(status)] = {"description": "Problem", "content": {"application/problem+json": problem_schema}}
    body: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "responses": responses}
    if op.params:
        body["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.where == "path", "schema": p.schema,
             **({"description": p.description} if p.description else {})}
            for p in op.params
        ]
    body["security"] = [{"functionKey": []}] if op.secured else []
    return body


@functools.cache
def openapi_document() -> dict[str, Any]:
    models = [AlertList, Device, DevicePage, Health, Problem]
    _, schemas = models_json_schema([(m, "serialization") for m in models],  # type: ignore[misc]
                                    by_alias=True, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Edge Cloud Messaging API", "version": __version__},
        "servers": [{"url": "/api"}],
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"}},
        },
    }
