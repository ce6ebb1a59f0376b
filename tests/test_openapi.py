"""The OpenAPI document says what the API does: as strict as the responses, every
status an operation can answer, both ways to pass a function key; and the check
that holds every response the tests receive to it cannot silently stop working."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal, get_args, get_origin

import azure.functions as func
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.alerts.models import Alert
from shared.lifecycle.models import ConnectionRecord, Device
from shared.meta.openapi import openapi_document
from shared.platform.errors import InvalidInput
from shared.platform.http import json_response, problem
from shared.platform.keys import validate_commandable_device_id
from standins import invoke
from tests.support.harness import http_request, json_of, user_function
from tests.support.openapi_responses import check_response, response_validator

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
DOCUMENT = openapi_document()
SCHEMAS = DOCUMENT["components"]["schemas"]
OPERATIONS = {op["operationId"]: (path, method, op)
              for path, item in DOCUMENT["paths"].items() for method, op in item.items()}
# The HTTP triggers as the worker indexed them (raw bindings, as the host reads them).
HTTP_FUNCTIONS = {name: f.trigger for name, f in invoke.FUNCTIONS.items() if f.trigger["type"] == "httpTrigger"}
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
        assert path == f"/{trigger['route']}", name
        assert [method.upper()] == [m.upper() for m in trigger["methods"]], name
        secured = trigger["authLevel"].upper() != "ANONYMOUS"
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
    assert ("400" in statuses) == bool(op.get("parameters") or op.get("requestBody")), "400 where it takes input"
    assert ("404" in statuses) == ("{" in path), "404 where the path names a resource"
    if op["security"]:
        assert "content" not in op["responses"]["401"], "the host answers 401, with no body guaranteed"
    else:
        assert "401" not in statuses
    assert "content" not in op["responses"]["414"], "the platform answers a URL over 4 KB, before the function"
    if name in STORAGE_ROUTES:
        for status in ("500", "503"):
            assert op["responses"][status]["content"] == problem_json
        assert op["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    for status in statuses - {"401", "414"}:
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


def test_no_response_schema_is_null_because_absent_optionals_are_left_out() -> None:
    responses = {name: schema for name, schema in SCHEMAS.items() if not name.endswith("Input")}
    assert not [node for node in walk(responses) if allows_null(node)]


def test_request_bodies_are_described_as_they_are_validated() -> None:
    for name in ("send_command", "send_fleet_command", "send_broadcast"):
        _, _, op = OPERATIONS[name]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = SCHEMAS[ref.rsplit("/", 1)[1]]
        assert schema["additionalProperties"] is False and "name" in schema["required"], name


def test_fixed_shapes_admit_no_other_property_and_free_form_values_do() -> None:
    for name, schema in SCHEMAS.items():
        assert schema["additionalProperties"] is False, name
    device = SCHEMAS["Device"]["properties"]
    assert device["attributes"]["additionalProperties"] is True
    assert device["inference"]["additionalProperties"] == {"$ref": "#/components/schemas/LatestInference"}
    assert device["telemetry"] == {"$ref": "#/components/schemas/LatestTelemetry",
                                   "description": "Only from get_device."}


@pytest.mark.parametrize("model", [Device, ConnectionRecord, Alert])
def test_timestamps_are_date_times_and_closed_sets_are_enums(model: Any) -> None:
    properties = SCHEMAS[model.__name__]["properties"]
    for field_name, field in model.model_fields.items():
        prop = properties[field.alias]
        if field.annotation in (datetime, datetime | None):
            assert prop.get("format") == "date-time", field_name
        if get_origin(field.annotation) is Literal:
            assert prop["enum"] == list(get_args(field.annotation)), field_name


def device_response(**changes: Any) -> func.HttpResponse:
    body = Device(device_id="d", state="Enabled", last_connected_at=T0).to_json_dict()
    for key, value in changes.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return json_response(body)


@pytest.mark.parametrize("name, response, complaint", [
    ("get_device", device_response(state=...), "'state' is a required property"),
    ("get_device", device_response(colour="red"), "Additional properties are not allowed ('colour'"),
    ("get_device", device_response(sessionName=None), "None is not of type 'string'"),
    ("get_device", device_response(lastConnectedAt="yesterday"), "'yesterday' is not a 'date-time'"),
    ("get_device", device_response(state="Sleeping"), "'Sleeping' is not one of"),
    ("get_device", json_response({"title": "Not Found", "status": 404}, status=404),
     "as application/json, documented as application/problem+json"),
    ("get_device", problem(503, "Service Unavailable", "storage is not reachable"),
     "without the documented header Retry-After"),
    ("get_device", problem(418, "I'm a teapot"), "a status the OpenAPI document does not list"),
    ("health", json_response({"status": "ok", "version": "1",
                              "checks": {"tableStorage": "ok", "blobStorage": "so so", "settings": "ok"}}),
     "'so so' is not one of"),
    ("health", func.HttpResponse(b"ok", mimetype="application/json"), "not JSON"),
])
def test_the_response_check_refuses_what_the_document_does_not_allow(
        name: str, response: func.HttpResponse, complaint: str) -> None:
    assert check_response in invoke.RESPONSE_CHECKS, "the session installs the check"
    with pytest.raises(AssertionError, match=re.escape(complaint)):
        check_response(name, response)


def test_the_response_check_accepts_a_full_device() -> None:
    device = Device(device_id="d", state="Disabled", deleted=True, connected=False, session_name="s",
                    last_connected_at=T0, last_disconnected_at=T0, disconnection_reason="ClientError",
                    sequence_number=3, attributes={"a": [1, None]}, created_on=T0, updated_on=T0, deleted_at=T0,
                    connection_history=[ConnectionRecord(kind="disconnected", sequence_number=3, time=T0,
                                                         session_name="s", reason="ClientError")])
    response_validator()("get_device", json_response(device))


@pytest.mark.usefixtures("app_env")
def test_a_call_that_receives_an_undocumented_response_fails_where_it_received_it(
        run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is on for every call through the harness: a real 404, with 404
    struck from what the document lists for ``get_device``, fails the call."""
    request = http_request("GET", "devices/nobody", route_params={"deviceId": "nobody"})
    assert run(user_function("get_device")(request)).status_code == 404
    monkeypatch.delitem(response_validator().responses["get_device"], "404")
    with pytest.raises(AssertionError, match="get_device answered 404, a status the OpenAPI document does not list"):
        run(user_function("get_device")(request))


def test_the_served_document_is_the_one_responses_are_checked_against(run: Any) -> None:
    assert json_of(run(user_function("openapi")(http_request("GET", "openapi.json")))) == DOCUMENT
    assert set(response_validator().responses) == set(OPERATIONS)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=128))
def test_the_command_routes_device_id_pattern_admits_exactly_the_ids_they_take(device_id: str) -> None:
    _, _, op = OPERATIONS["send_command"]
    [schema] = [p["schema"] for p in op["parameters"] if p["name"] == "deviceId"]
    try:
        validate_commandable_device_id(device_id)
        taken = True
    except InvalidInput:
        taken = False
    # JSON Schema reads a pattern as ECMA-262 does, where ``$`` ends the input; Python's
    # ``$`` also matches before a final newline ("0\n"), so the anchors become fullmatch.
    ecma = re.fullmatch(schema["pattern"].removeprefix("^").removesuffix("$"), device_id)
    assert taken == (ecma is not None and _utf8(device_id)), device_id


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def test_every_link_leads_to_an_operation_with_the_parameters_it_names() -> None:
    """The links are how a client (and schemathesis's stateful phase) goes from an
    answer to the next call: each names an operation, only parameters it takes, and a
    field the answer has."""
    links = [(name, status, link) for name, (_, _, op) in OPERATIONS.items()
             for status, response in op["responses"].items() for link in response.get("links", {}).values()]
    assert {name for name, _, _ in links} >= {"list_devices", "send_command", "list_commands", "send_fleet_command",
                                              "list_broadcasts", "list_dead_letters"}
    for name, status, link in links:
        _, _, target = OPERATIONS[link["operationId"]]
        taken = {p["name"] for p in target.get("parameters", [])}
        assert set(link["parameters"]) <= taken, (name, link)
        _, _, source = OPERATIONS[name]
        ref = source["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        body = SCHEMAS[ref.rsplit("/", 1)[1]]
        for expression in link["parameters"].values():
            if expression.startswith("$response.body#/"):
                first, *rest = expression.removeprefix("$response.body#/").split("/")
                assert first in body["properties"], (name, expression)
                if rest:  # items/0/field
                    item = SCHEMAS[body["properties"][first]["items"]["$ref"].rsplit("/", 1)[1]]
                    assert rest[1] in item["properties"], (name, expression)
            else:
                where, _, param = expression.removeprefix("$request.").partition(".")
                assert param in {p["name"] for p in source.get("parameters", []) if p["in"] == where}, expression
