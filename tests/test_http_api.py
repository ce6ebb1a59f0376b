"""The registry's HTTP API: devices, alerts, health and the OpenAPI document."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from tests.harness import deliver, http_request, json_of, unreachable_storage, user_function
from tools import event_factory as ev

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


@pytest.mark.parametrize("params, detail", [
    ({"limit": "0"}, "limit must be between 1 and 1000"),
    ({"limit": "ten"}, "limit must be a whole number"),
    ({"connected": "maybe"}, "connected must be true or false"),
    ({"continuationToken": "not-a-token"}, "continuationToken"),
])
def test_list_devices_rejects_bad_parameters_with_a_problem(run: Any, params: dict[str, str], detail: str) -> None:
    assert_problem(call(run, "list_devices", "devices", params=params), 400, detail)


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


def test_list_alerts_is_newest_first_and_filters_by_device_since_and_limit(run: Any, empty_registry: None) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    for n, dev in enumerate(["al-1", "al-2"]):
        for seq in (1, 2):
            at = now - timedelta(hours=10 * seq + n)
            deliver(run, ev.connected(dev, seq, at - timedelta(minutes=1)),
                    ev.disconnected(dev, seq, at, reason="QuotaExceeded"))
    everything = json_of(call(run, "list_alerts", "alerts"))["items"]
    times = [a["timestamp"] for a in everything]
    assert len(everything) == 4 and times == sorted(times, reverse=True)
    mine = json_of(call(run, "list_alerts", "alerts", params={"deviceId": "al-2"}))["items"]
    assert {a["deviceId"] for a in mine} == {"al-2"} and len(mine) == 2
    since = (now - timedelta(hours=15)).isoformat().replace("+00:00", "Z")
    recent = json_of(call(run, "list_alerts", "alerts", params={"since": since}))["items"]
    assert len(recent) == 2
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
