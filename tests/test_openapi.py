"""The OpenAPI document says what the API does: as strict as the responses, every
status an operation can answer, both ways to pass a function key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal, get_args, get_origin

import azure.functions as func
import pytest
from azure.functions.decorators.http import HttpTrigger

from shared.alerts.models import Alert
from shared.lifecycle.models import ConnectionRecord, Device
from shared.meta.openapi import openapi_document
from tools import invoke

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
DOCUMENT = openapi_document()
SCHEMAS = DOCUMENT["components"]["schemas"]
OPERATIONS = {op["operationId"]: (path, method, op)
              for path, item in DOCUMENT["paths"].items() for method, op in item.items()}
HTTP_FUNCTIONS = {str(name): trigger for name, f in invoke.FUNCTIONS.items()
                  if isinstance(trigger := f.get_trigger(), HttpTrigger)}
# The routes whose handler maps storage and settings failures to problems.
STORAGE_ROUTES = {"list_devices", "get_device", "list_alerts"}


def walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from walk(child)


def test_every_http_function_is_an_operation_with_its_route_method_and_key() -> None:
    assert set(OPERATIONS) == set(HTTP_FUNCTIONS)
    for name, trigger in HTTP_FUNCTIONS.items():
        path, method, op = OPERATIONS[name]
        assert path == f"/{trigger.route}", name
        assert [method.upper()] == [str(m.value) for m in trigger.methods or ()], name
        secured = trigger.auth_level is not func.AuthLevel.ANONYMOUS  # None: the app's level, FUNCTION
        # Either scheme alone satisfies an operation: a list of alternatives, one scheme each.
        assert op["security"] == ([{"functionKeyHeader": []}, {"functionKeyQuery": []}] if secured else []), name


def test_a_function_key_is_accepted_in_the_header_or_the_code_parameter() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert {(s["type"], s["in"], s["name"]) for s in schemes.values()} == {
        ("apiKey", "header", "x-functions-key"), ("apiKey", "query", "code")}


@pytest.mark.parametrize("name", sorted(HTTP_FUNCTIONS))
def test_every_operation_lists_the_problems_it_can_answer(name: str) -> None:
    path, _, op = OPERATIONS[name]
    statuses = set(op["responses"])
    problem_json = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert any(s.startswith("2") for s in statuses)
    assert ("400" in statuses) == bool(op.get("parameters")), "400 where it takes parameters"
    assert ("404" in statuses) == ("{" in path), "404 where the path names a resource"
    if op["security"]:
        assert "content" not in op["responses"]["401"], "the host answers 401, with no body guaranteed"
    else:
        assert "401" not in statuses
    if name in STORAGE_ROUTES:
        for status in ("500", "503"):
            assert op["responses"][status]["content"] == problem_json
        assert op["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    for status in statuses - {"401"}:
        if int(status) >= 400 and (name, status) != ("health", "503"):
            assert op["responses"][status]["content"] == problem_json, status


def test_the_fields_a_bare_device_is_sent_with_are_exactly_the_required_ones() -> None:
    bare = Device(device_id="d").to_json_dict()
    assert set(SCHEMAS["Device"]["required"]) == set(bare) == {
        "deviceId", "state", "deleted", "connected", "connectionHistory"}
    record = ConnectionRecord(kind="connected", sequence_number=1, time=T0).to_json_dict()
    assert set(SCHEMAS["ConnectionRecord"]["required"]) == set(record)


def allows_null(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    kinds = node.get("type")
    return "null" in (kinds if isinstance(kinds, list) else [kinds]) or ("default" in node and node["default"] is None)


def test_nothing_in_the_document_is_null_because_absent_optionals_are_left_out() -> None:
    assert not [node for node in walk(DOCUMENT["components"]) if allows_null(node)]


def test_fixed_shapes_admit_no_other_property_and_free_form_values_do() -> None:
    for name, schema in SCHEMAS.items():
        assert schema["additionalProperties"] is False, name
    for free_form in ("attributes", "telemetry", "inference"):
        assert SCHEMAS["Device"]["properties"][free_form]["additionalProperties"] is True


@pytest.mark.parametrize("model", [Device, ConnectionRecord, Alert])
def test_timestamps_are_date_times_and_closed_sets_are_enums(model: Any) -> None:
    properties = SCHEMAS[model.__name__]["properties"]
    for field_name, field in model.model_fields.items():
        prop = properties[field.alias]
        if field.annotation in (datetime, datetime | None):
            assert prop.get("format") == "date-time", field_name
        if get_origin(field.annotation) is Literal:
            assert prop["enum"] == list(get_args(field.annotation)), field_name
