"""The registry's HTTP API: devices, alerts, health and the OpenAPI document."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from openapi_spec_validator import validate

from shared.platform.storage import reset_data_store
from standins import event_factory as ev
from tests.support.harness import changed_settings, deliver, http_request, json_of, unreachable_storage, user_function

pytestmark = pytest.mark.usefixtures("app_env")
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def call(run: Any, name: str, path: str, **kwargs: Any) -> Any:
    return run(user_function(name)(http_request("GET", path, **kwargs)))


def assert_problem(response: Any, status: int, detail_part: str) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = json_of(response)
    assert body["status"] == status and body["title"]
    assert detail_part in body["detail"]


@pytest.fixture
def fleet(run: Any, empty_registry: None) -> list[str]:
    """Seven devices; the even-numbered ones connected."""
    ids = [f"fleet-{n:02d}" for n in range(7)]
    for n, dev in enumerate(ids):
        deliver(run, ev.created_or_updated(dev, T0, attributes={"n": n}))
        if n % 2 == 0:
            deliver(run, ev.connected(dev, 1, T0))
    return ids


def test_list_devices_pages_through_every_device_exactly_once(run: Any, fleet: list[str]) -> None:
    seen: list[str] = []
    token = None
    for _ in range(20):
        params = {"limit": "3"} | ({"continuationToken": token} if token else {})
        body = json_of(call(run, "list_devices", "devices", params=params))
        assert len(body["items"]) <= 3
        seen += [d["deviceId"] for d in body["items"]]
        token = body.get("continuationToken")
        if token is None:
            break
    assert sorted(seen) == fleet


@pytest.mark.parametrize("connected, expected", [("true", [0, 2, 4, 6]), ("false", [1, 3, 5])])
def test_list_devices_filters_on_presence(run: Any, fleet: list[str], connected: str, expected: list[int]) -> None:
    body = json_of(call(run, "list_devices", "devices", params={"connected": connected}))
    assert sorted(d["deviceId"] for d in body["items"]) == [fleet[n] for n in expected]
    assert all(d["connected"] is (connected == "true") for d in body["items"])


# Each bad value of a query parameter: the function, the parameter, the value, a part of the rule.
BAD_QUERY_VALUES = [
    *[(function, "limit", value, rule) for function in ("list_devices", "list_alerts") for value, rule in [
        ("0", "between 1 and 1000"), ("1001", "between 1 and 1000"), ("9" * 5000, "between 1 and 1000"),
        ("ten", "whole number"), (" 5 ", "whole number"), ("5 ", "whole number"), ("1_0", "whole number"),
        ("\u0663", "whole number"), ("\uff15", "whole number"), ("+5", "whole number"), ("-1", "whole number"),
        ("05", "whole number"), ("5.0", "whole number"), ("1e3", "whole number"), ("0x10", "whole number"),
        ("", "leave it out"),
    ]],
    *[("list_devices", "connected", value, "true or false")
      for value in ("maybe", "1", "0", "True", "FALSE", "yes", " true", "")],
    ("list_devices", "continuationToken", "not-a-token", "not a token this API issued"),
    ("list_devices", "continuationToken", "", "not a token this API issued"),
    *[("list_alerts", "since", value, rule) for value, rule in [
        ("yesterday", "RFC 3339"), ("20261120T080000Z", "RFC 3339"), ("2026-W47-5T08:00:00Z", "RFC 3339"),
        ("2026-324T08:00:00Z", "RFC 3339"), ("2026-11-20T08:00:00", "RFC 3339"), ("2026-11-20", "RFC 3339"),
        ("2026-11-20 08:00:00Z", "RFC 3339"), ("2026-11-20T08:00Z", "RFC 3339"),
        ("2026-02-30T08:00:00Z", "not a valid date-time"), ("1969-12-31T23:59:59Z", "must lie between"),
        ("2026-11-20T08:00:00 01:00", "%2B"), ("", "leave it out"),
    ]],
    ("list_alerts", "deviceId", "", "non-empty"),
    ("list_alerts", "deviceId", "x" * 129, "128"),
]


@pytest.mark.parametrize("function, name, value, rule", BAD_QUERY_VALUES)
def test_a_bad_query_parameter_is_a_400_problem_naming_it(run: Any, function: str, name: str, value: str,
                                                          rule: str) -> None:
    response = call(run, function, function.removeprefix("list_"), params={name: value})
    assert_problem(response, 400, rule)
    body = json_of(response)
    assert body["detail"].startswith(f"{name} ")
    assert body["errors"] == [{"loc": ["query", name], "msg": body["detail"].removeprefix(f"{name} "),
                               "type": "value_error"}]


@pytest.mark.parametrize("function, params", [
    ("list_devices", {"limit": "1"}), ("list_devices", {"limit": "1000"}), ("list_devices", {"connected": "false"}),
    ("list_alerts", {"since": "2026-11-20T09:00:00+01:00"}), ("list_alerts", {"since": "2026-11-20t08:00:00.123z"}),
    ("list_alerts", {"since": "2026-11-20T03:00:00-05:00", "limit": "1000", "deviceId": "a b"}),
])
def test_documented_query_values_are_accepted(run: Any, empty_registry: None, function: str,
                                              params: dict[str, str]) -> None:
    response = call(run, function, function.removeprefix("list_"), params=params)
    assert response.status_code == 200, json_of(response)
    assert json_of(response)["items"] == []


def first_token(run: Any, **params: str) -> str:
    """The continuation token of the first page of two devices."""
    token = json_of(call(run, "list_devices", "devices", params={"limit": "2", **params}))["continuationToken"]
    assert isinstance(token, str)
    return token


def b64json(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def flip(text: str, index: int) -> str:
    """``text`` with the character at ``index`` replaced by another base64url character."""
    return text[:index] + ("B" if text[index] == "A" else "A") + text[index + 1:]


NOT_ISSUED = "continuationToken is not a token this API issued for this query"


@pytest.mark.parametrize("forge", [
    lambda token: b64json({}),
    lambda token: b64json({"PartitionKey": "a"}),
    lambda token: b64json({"PartitionKey": "fleet-05", "RowKey": "registry"}),
    lambda token: b64json({"PartitionKey": "fleet-05", "RowKey": "registry"}) + "." + "A" * 43,
    lambda token: flip(token, 3),  # a byte of the next keys
    lambda token: flip(token, len(token) - 5),  # a byte of the MAC
    lambda token: token.replace(".", ".A", 1)[:-1],  # the MAC shifted
    lambda token: token + "A",
    lambda token: token[:-1],
    lambda token: token.partition(".")[0],  # the MAC cut off
    lambda token: "%%% garbage %%%",
    lambda token: "\u00e9" * 60,
], ids=["empty object", "a partition key only", "keys of our choosing", "a forged MAC", "a flipped key byte",
        "a flipped MAC byte", "a shifted MAC", "a byte added", "a byte removed", "no MAC", "garbage", "non-ASCII"])
def test_list_devices_refuses_a_continuation_token_it_did_not_issue(run: Any, fleet: list[str], forge: Any) -> None:
    forged = forge(first_token(run))
    assert_problem(call(run, "list_devices", "devices", params={"continuationToken": forged}), 400, NOT_ISSUED)


@pytest.mark.parametrize("issued_for, used_with", [
    ({"connected": "true"}, {"connected": "false"}),
    ({"connected": "true"}, {}),
    ({}, {"connected": "true"}),
])
def test_a_continuation_token_only_continues_the_query_it_was_issued_for(
        run: Any, fleet: list[str], issued_for: dict[str, str], used_with: dict[str, str]) -> None:
    token = first_token(run, **issued_for)
    assert call(run, "list_devices", "devices", params={**issued_for, "continuationToken": token}).status_code == 200
    response = call(run, "list_devices", "devices", params={**used_with, "continuationToken": token})
    assert_problem(response, 400, NOT_ISSUED)


def test_a_continuation_token_survives_a_restart_and_may_change_the_page_size(run: Any, fleet: list[str]) -> None:
    token = first_token(run, connected="true")
    run(reset_data_store())  # a new process, or another instance: the key comes from storage
    body = json_of(call(run, "list_devices", "devices",
                        params={"connected": "true", "limit": "10", "continuationToken": token}))
    assert [d["deviceId"] for d in body["items"]] == [fleet[4], fleet[6]]
    assert "continuationToken" not in body


def test_get_device_returns_the_contract_shape(run: Any, fleet: list[str]) -> None:
    body = json_of(call(run, "get_device", "devices/fleet-02", route_params={"deviceId": "fleet-02"}))
    assert {"deviceId", "state", "deleted", "connected"} <= set(body)
    assert body["attributes"] == {"n": 2}
    assert all("_" not in key for key in body), "JSON is camelCase"


def test_get_device_of_an_unknown_id_is_404(run: Any) -> None:
    response = call(run, "get_device", "devices/nobody", route_params={"deviceId": "nobody"})
    assert_problem(response, 404, "nobody")


def test_get_device_with_an_overlong_id_is_400(run: Any) -> None:
    response = call(run, "get_device", "devices/x", route_params={"deviceId": "x" * 129})
    assert_problem(response, 400, "128")


def test_list_alerts_is_newest_raised_first_and_filters_by_device_since_and_limit(
        run: Any, empty_registry: None) -> None:
    """Listings go by when an alert was raised (issue 15, finding 12): ``since`` keeps
    what was raised since then, whatever time the messages carried."""
    import time

    now = datetime.now(UTC).replace(microsecond=0)
    between = now
    for n, dev in enumerate(["al-1", "al-2"]):
        for seq in (1, 2):
            at = now - timedelta(hours=10 * seq + n)  # the events are hours old
            deliver(run, ev.connected(dev, seq, at - timedelta(minutes=1)),
                    ev.disconnected(dev, seq, at, reason="QuotaExceeded"))
        if dev == "al-1":
            time.sleep(0.01)
            between = datetime.now(UTC)
            time.sleep(0.01)
    everything = json_of(call(run, "list_alerts", "alerts"))["items"]
    raised = [a["raisedAt"] for a in everything]
    assert len(everything) == 4 and raised == sorted(raised, reverse=True)
    mine = json_of(call(run, "list_alerts", "alerts", params={"deviceId": "al-2"}))["items"]
    assert {a["deviceId"] for a in mine} == {"al-2"} and len(mine) == 2
    since = between.isoformat().replace("+00:00", "Z")
    recent = json_of(call(run, "list_alerts", "alerts", params={"since": since}))["items"]
    assert {a["deviceId"] for a in recent} == {"al-2"} and len(recent) == 2, "raised after al-1's"
    assert len(json_of(call(run, "list_alerts", "alerts", params={"limit": "3"}))["items"]) == 3
    assert_problem(call(run, "list_alerts", "alerts", params={"since": "yesterday"}), 400, "RFC 3339")


def health_schema(run: Any, status: int) -> dict[str, Any]:
    document = json_of(call(run, "openapi", "openapi.json"))
    schema = document["paths"]["/health"]["get"]["responses"][str(status)]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def test_health_reports_ok_with_the_version(run: Any) -> None:
    response = call(run, "health", "health")
    body = json_of(response)
    assert response.status_code == 200
    assert body["status"] == "ok" and body["version"]
    assert body["checks"] == {"tableStorage": "ok", "blobStorage": "ok", "settings": "ok"}
    jsonschema.validate(body, health_schema(run, 200))


def test_health_reports_unreachable_storage_as_503_without_details(run: Any) -> None:
    with unreachable_storage(run):
        response = call(run, "health", "health")
    body = json_of(response)
    assert response.status_code == 503
    assert body == {"status": "degraded", "version": body["version"],
                    "checks": {"tableStorage": "unreachable", "blobStorage": "unreachable", "settings": "ok"}}
    jsonschema.validate(body, health_schema(run, 503))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**body, "checks": {**body["checks"], "settings": "invalid: x=secret"}},
                            health_schema(run, 503))


HTTP_LOG = "azure.core.pipeline.policies.http_logging_policy"


def count_storage_requests(caplog: pytest.LogCaptureFixture) -> int:
    """Requests the storage SDKs sent, as azure-core's HTTP logging policy records them."""
    return sum(1 for r in caplog.records if r.name == HTTP_LOG and r.getMessage().startswith("Request URL"))


def test_health_probes_storage_once_per_ttl_however_many_calls_arrive(
        run: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.meta import health
    from shared.platform.storage import data_store, reset_data_store
    from shared.platform.storage_names import DEADLETTER_CONTAINER, DEVICES_TABLE

    monkeypatch.setattr(health, "PROBE_TTL_SECONDS", 60.0)
    run(reset_data_store())  # a new store: nothing probed yet
    run(data_store().table(DEVICES_TABLE))  # created beforehand, so that a probe is one read of each
    run(data_store().container(DEADLETTER_CONTAINER))
    caplog.set_level(logging.INFO, logger=HTTP_LOG)

    async def burst(n: int) -> list[Any]:
        handler = user_function("health")
        return await asyncio.gather(*(handler(http_request("GET", "health")) for _ in range(n)))

    responses = [*run(burst(20)), *(call(run, "health", "health") for _ in range(5))]
    assert {r.status_code for r in responses} == {200}
    assert count_storage_requests(caplog) == 2, "one table read and one blob read for 25 calls"
    monkeypatch.setattr(health, "PROBE_TTL_SECONDS", 0.0)  # the TTL has passed
    assert call(run, "health", "health").status_code == 200
    assert count_storage_requests(caplog) == 4


def test_a_storage_outage_is_a_503_problem_not_a_crash(run: Any) -> None:
    with unreachable_storage(run):
        response = call(run, "get_device", "devices/a", route_params={"deviceId": "a"})
    assert_problem(response, 503, "storage is not reachable")
    assert response.headers["Retry-After"]


@contextlib.contextmanager
def storage_with_a_wrong_key(run: Any) -> Iterator[None]:
    """``DataStorage`` pointed at Azurite with another account key, for the block: every request is refused (403)."""
    wrong = "AccountKey=" + base64.b64encode(b"wrong" * 12).decode()
    with changed_settings(run, {"DataStorage": re.sub(r"AccountKey=[^;]+", wrong, os.environ["DataStorage"])}):
        yield


def test_a_storage_refusal_is_a_500_problem_without_the_service_message(
        run: Any, caplog: pytest.LogCaptureFixture) -> None:
    with storage_with_a_wrong_key(run), caplog.at_level(logging.ERROR):
        response = call(run, "get_device", "devices/a", route_params={"deviceId": "a"})
    assert_problem(response, 500, "storage refused the request (status 403)")
    assert "Retry-After" not in response.headers, "retrying cannot help"
    assert "authenticate" not in response.get_body().decode()
    assert any(r.exc_info and "authenticate" in str(r.exc_info[1]) for r in caplog.records), "logged in full"


def test_an_unexpected_exception_is_a_logged_500_problem_without_its_text(
        run: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from shared.lifecycle.registry import DeviceRegistry

    async def broken(self: Any, device_id: str, combine: Any = None) -> None:
        raise RuntimeError("a bug with a secret in its message")

    monkeypatch.setattr(DeviceRegistry, "document", broken)
    with caplog.at_level(logging.ERROR):
        response = call(run, "get_device", "devices/a", route_params={"deviceId": "a"})
    assert response.status_code == 500 and response.mimetype == "application/problem+json"
    assert json_of(response) == {"type": "about:blank", "title": "Internal Server Error", "status": 500}
    assert any(r.exc_info and "secret" in str(r.exc_info[1]) for r in caplog.records), "logged with the traceback"


def test_openapi_is_a_valid_3_1_document_that_describes_the_responses(run: Any, fleet: list[str]) -> None:
    document = json_of(call(run, "openapi", "openapi.json"))
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert {"/devices", "/devices/{deviceId}", "/alerts", "/health", "/openapi.json"} <= set(document["paths"])
    schemas = {"components": document["components"]}
    device_schema = document["paths"]["/devices/{deviceId}"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    body = json_of(call(run, "get_device", "devices/fleet-00", route_params={"deviceId": "fleet-00"}))
    jsonschema.validate(body, device_schema | schemas)
    page_schema = document["paths"]["/devices"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(json_of(call(run, "list_devices", "devices")), page_schema | schemas)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"deviceId": 5}, device_schema | schemas)


def documented_statuses() -> dict[str, int]:
    """The status docs/api.md's "Errors:" paragraph gives each domain error."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    paragraph = text[text.index("\nErrors: "):].split("\n\n")[0]
    return {name: int(status) for name, status in re.findall(r"`([A-Z]\w+)`\s+([45]\d\d)", paragraph)}


def test_every_domain_error_answers_the_status_the_documentation_gives() -> None:
    from http import HTTPStatus

    from shared.platform import errors
    from shared.platform.http import PROBLEMS, domain_problem

    domain = {cls.__name__ for cls in vars(errors).values()
              if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == errors.__name__}
    mapped = {name: response.status_code for name in domain - {"ConfigurationError"}
              if (response := domain_problem(getattr(errors, name)("the reason"))) is not None}
    assert set(mapped) == domain - {"ConfigurationError"}, "each domain error has its status"
    assert documented_statuses() == mapped
    for cls, status in PROBLEMS.items():
        response = domain_problem(cls("the reason"))
        assert response is not None and response.status_code == status, cls
        assert response.mimetype == "application/problem+json"
        assert orjson.loads(response.get_body()) == {"type": "about:blank", "title": HTTPStatus(status).phrase,
                                                     "status": status, "detail": "the reason"}, cls
        assert ("Retry-After" in response.headers) == (status == 503), cls
    assert domain_problem(errors.Unavailable("busy", 7)).headers["Retry-After"] == "7"  # type: ignore[union-attr]
    assert domain_problem(errors.Contention("kept changing")).headers["Retry-After"] == "1"  # type: ignore[union-attr]
    assert domain_problem(ValueError("not the domain's")) is None
