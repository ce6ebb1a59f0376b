"""client_lifecycle: the registry follows Event Grid's MQTT client life cycle events,
whatever their order, schema or number of deliveries."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.core.exceptions import AzureError

from shared.lifecycle.registry import DeviceRegistry
from shared.platform.keys import device_key
from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER
from tests.harness import deliver, http_request, json_of, unreachable_storage, user_function
from tools import event_factory as ev

pytestmark = pytest.mark.usefixtures("app_env")
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def new_id(prefix: str = "dev") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def device(run: Any, device_id: str) -> dict[str, Any]:
    response = run(user_function("get_device")(
        http_request("GET", f"devices/{device_id}", route_params={"deviceId": device_id})))
    assert response.status_code == 200, response.get_body()
    return json_of(response)  # type: ignore[no-any-return]


def alerts_of(run: Any, device_id: str) -> list[dict[str, Any]]:
    response = run(user_function("list_alerts")(
        http_request("GET", "alerts", params={"deviceId": device_id, "since": "2026-01-01T00:00:00Z"})))
    assert response.status_code == 200
    return json_of(response)["items"]  # type: ignore[no-any-return]


def dead_letters(run: Any, stream: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        container = await data_store().container(DEADLETTER_CONTAINER)
        docs = []
        async for blob in container.list_blobs(name_starts_with=f"{stream}/"):
            downloaded = await container.download_blob(blob.name)
            docs.append(orjson.loads(await downloaded.readall()) | {"_name": blob.name})
        return docs

    return run(read())  # type: ignore[no-any-return]


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_a_connect_makes_the_device_connected_in_either_schema(run: Any, schema: str) -> None:
    dev = new_id()
    deliver(run, ev.connected(dev, 1, T0, session="s1", schema=schema))
    body = device(run, dev)
    assert body["deviceId"] == dev
    assert body["connected"] is True
    assert body["sessionName"] == "s1"
    assert body["sequenceNumber"] == 1
    assert body["lastConnectedAt"].startswith("2026-11-20T08:00:00")
    assert body["state"] == "Unknown"  # no created event yet
    assert body["deleted"] is False


def test_the_shared_samples_apply_in_both_schemas(run: Any) -> None:
    if not SAMPLES.is_dir():
        pytest.skip(f"{SAMPLES} is not beside the repository")
    documents = json.loads((SAMPLES / "lifecycle-eventgrid-schema.json").read_text())
    documents += json.loads((SAMPLES / "lifecycle-cloudevents.json").read_text())
    deliver(run, *documents)
    camera = device(run, "camera-017")
    assert camera["state"] == "Enabled"
    assert camera["attributes"] == {"site": "plant-3", "line": "2", "type": "camera"}
    # Session 1 (seq 3) connected then disconnected; session 2 (seq 4) connected last.
    assert camera["connected"] is True
    assert camera["sessionName"] == "camera-017-s2"
    assert camera["sequenceNumber"] == 4
    assert camera["disconnectionReason"] == "ConnectionLost"
    assert device(run, "camera-099")["deleted"] is True


def test_a_disconnect_delivered_before_its_connect_wins(run: Any) -> None:
    dev = new_id()
    deliver(run, ev.disconnected(dev, 3, T0 + timedelta(minutes=5), reason="ConnectionLost"),
            ev.connected(dev, 3, T0))
    body = device(run, dev)
    assert body["connected"] is False
    assert body["disconnectionReason"] == "ConnectionLost"
    assert [(r["kind"], r["sequenceNumber"]) for r in body["connectionHistory"]] == [
        ("connected", 3), ("disconnected", 3)]


def test_an_older_connect_does_not_override_a_newer_session(run: Any) -> None:
    dev = new_id()
    deliver(run, ev.connected(dev, 5, T0 + timedelta(hours=1), session="new"),
            ev.disconnected(dev, 4, T0 + timedelta(minutes=30)),
            ev.connected(dev, 4, T0, session="old"))
    body = device(run, dev)
    assert (body["connected"], body["sessionName"], body["sequenceNumber"]) == (True, "new", 5)


def test_duplicates_change_nothing(run: Any) -> None:
    dev = new_id()
    events = [ev.connected(dev, 1, T0), ev.disconnected(dev, 1, T0 + timedelta(minutes=1))]
    deliver(run, *events)
    first = device(run, dev)
    deliver(run, *events, *events)
    assert device(run, dev) == first
    assert len(first["connectionHistory"]) == 2


def test_client_metadata_applies_when_not_older(run: Any) -> None:
    dev = new_id()
    deliver(run,
            ev.created_or_updated(dev, T0 + timedelta(hours=2), created_on=T0, attributes={"site": "b"}),
            ev.created_or_updated(dev, T0 + timedelta(hours=1), created_on=T0, attributes={"site": "a"}))
    assert device(run, dev)["attributes"] == {"site": "b"}
    deliver(run, ev.created_or_updated(dev, T0 + timedelta(hours=2), created_on=T0, state="Disabled",
                                       attributes={"site": "c"}))
    body = device(run, dev)
    assert (body["state"], body["attributes"]) == ("Disabled", {"site": "c"})


def test_a_delete_marks_the_device_deleted_and_only_a_newer_create_revives_it(run: Any) -> None:
    dev = new_id()
    deliver(run, ev.created_or_updated(dev, T0, attributes={"v": 1}), ev.deleted(dev, T0 + timedelta(hours=1)))
    assert device(run, dev)["deleted"] is True
    deliver(run, ev.created_or_updated(dev, T0 + timedelta(minutes=30), created_on=T0, attributes={"v": 2}))
    body = device(run, dev)
    assert body["deleted"] is True, "an update older than the delete must not revive"
    deliver(run, ev.created_or_updated(dev, T0 + timedelta(hours=2), attributes={"v": 3}))
    body = device(run, dev)
    assert (body["deleted"], body["attributes"]) == (False, {"v": 3})


def test_a_delete_older_than_the_last_update_is_ignored(run: Any) -> None:
    dev = new_id()
    deliver(run, ev.created_or_updated(dev, T0 + timedelta(hours=2)), ev.deleted(dev, T0 + timedelta(hours=1)))
    assert device(run, dev)["deleted"] is False


def test_a_recreated_client_starts_its_sessions_again(run: Any) -> None:
    dev = new_id()
    deliver(run, ev.created_or_updated(dev, T0), ev.connected(dev, 7, T0 + timedelta(minutes=1)),
            ev.deleted(dev, T0 + timedelta(hours=1)),
            ev.disconnected(dev, 7, T0 + timedelta(hours=1), reason="ClientAuthenticationError"))
    # The new incarnation's first connect arrives before its create event.
    recreated = T0 + timedelta(hours=2)
    deliver(run, ev.connected(dev, 1, recreated + timedelta(minutes=1), session="fresh"),
            ev.created_or_updated(dev, recreated))
    body = device(run, dev)
    assert (body["deleted"], body["connected"], body["sessionName"], body["sequenceNumber"]) == (
        False, True, "fresh", 1)


def test_troubling_disconnection_reasons_raise_one_alert_each(run: Any) -> None:
    dev = new_id()
    bad = ev.disconnected(dev, 2, T0 + timedelta(minutes=2), reason="ClientAuthenticationError")
    deliver(run, ev.connected(dev, 1, T0), ev.disconnected(dev, 1, T0 + timedelta(minutes=1), reason="ConnectionLost"),
            ev.connected(dev, 2, T0 + timedelta(minutes=1, seconds=30)), bad, bad)
    alerts = alerts_of(run, dev)
    assert [(a["rule"], a["value"], a["severity"], a["stream"]) for a in alerts] == [
        ("disconnectionReason", "ClientAuthenticationError", "critical", "lifecycle")]
    assert set(alerts[0]) >= {"alertId", "deviceId", "rule", "severity", "stream", "message", "timestamp", "raisedAt"}


def test_a_refusal_of_a_disabled_or_deleted_client_raises_no_alert(run: Any) -> None:
    disabled, gone = new_id(), new_id()
    deliver(run, ev.created_or_updated(disabled, T0, state="Disabled"), ev.connected(disabled, 1, T0),
            ev.disconnected(disabled, 1, T0 + timedelta(minutes=1), reason="ClientAuthenticationError"),
            ev.connected(gone, 1, T0), ev.deleted(gone, T0 + timedelta(minutes=1)),
            ev.disconnected(gone, 1, T0 + timedelta(minutes=1), reason="ClientAuthenticationError"))
    assert alerts_of(run, disabled) == [] and alerts_of(run, gone) == []
    assert device(run, disabled)["disconnectionReason"] == "ClientAuthenticationError"


def test_a_refusal_delivered_before_the_delete_that_caused_it_is_retracted(run: Any) -> None:
    disabled, gone = new_id(), new_id()
    deliver(run, ev.created_or_updated(disabled, T0), ev.connected(disabled, 1, T0),
            ev.disconnected(disabled, 1, T0 + timedelta(hours=1), reason="ClientAuthorizationError"),
            ev.connected(gone, 1, T0), ev.disconnected(gone, 1, T0 + timedelta(hours=1),
                                                       reason="ClientAuthenticationError"))
    assert len(alerts_of(run, disabled)) == 1 and len(alerts_of(run, gone)) == 1
    deliver(run, ev.created_or_updated(disabled, T0 + timedelta(hours=1), created_on=T0, state="Disabled"),
            ev.deleted(gone, T0 + timedelta(hours=1)))
    assert alerts_of(run, disabled) == [] and alerts_of(run, gone) == []


def test_a_refusal_long_before_the_delete_stays_an_alert(run: Any) -> None:
    dev = new_id()
    deliver(run, ev.connected(dev, 1, T0), ev.disconnected(dev, 1, T0, reason="ClientAuthenticationError"),
            ev.deleted(dev, T0 + timedelta(hours=1)))
    assert [a["value"] for a in alerts_of(run, dev)] == ["ClientAuthenticationError"]


def test_an_older_sessions_late_disconnect_is_still_the_last_disconnection(run: Any) -> None:
    dev = new_id()
    deliver(run, ev.connected(dev, 2, T0 + timedelta(minutes=10)),
            ev.disconnected(dev, 1, T0 + timedelta(minutes=9), reason="ConnectionLost"))
    body = device(run, dev)
    assert (body["connected"], body["sequenceNumber"]) == (True, 2)
    assert body["disconnectionReason"] == "ConnectionLost"
    assert body["lastDisconnectedAt"].startswith("2026-11-20T08:09")


def test_flapping_raises_an_alert_once_per_window(run: Any) -> None:
    dev = new_id()  # the test settings flag 3 disconnects within 600 s
    events = []
    for seq in range(1, 5):
        at = T0 + timedelta(seconds=60 * seq)
        events += [ev.connected(dev, seq, at), ev.disconnected(dev, seq, at + timedelta(seconds=20),
                                                               reason="ConnectionLost")]
    deliver(run, *events[:4])
    assert alerts_of(run, dev) == [], "two disconnects are not flapping"
    deliver(run, *events[4:], *events)
    flapping = [a for a in alerts_of(run, dev) if a["rule"] == "flapping"]
    assert len(flapping) == 1
    assert flapping[0]["value"] >= 3


@pytest.mark.parametrize("document, reason", [
    ({"id": "x1", "subject": "clients/a", "eventType": "Microsoft.EventGrid.SomethingElse",
      "eventTime": "2026-11-20T08:00:00Z", "dataVersion": "1", "data": {}}, "unsupported event type"),
    ({"id": "x2", "subject": "clients/a", "eventType": "Microsoft.EventGrid.MQTTClientSessionConnected",
      "eventTime": "2026-11-20T08:00:00Z", "dataVersion": "1",
      "data": {"clientAuthenticationName": "a", "sequenceNumber": "many"}}, "invalid"),
    ({"id": "x3", "subject": "clients/a", "eventType": "Microsoft.EventGrid.MQTTClientSessionConnected",
      "eventTime": "2026-11-20T08:00:00Z", "dataVersion": "1",
      "data": {"clientAuthenticationName": "x" * 129, "sequenceNumber": 1}}, "longer than 128"),
    ({"id": "x4", "subject": "clients/a", "eventType": "Microsoft.EventGrid.MQTTClientDeleted",
      "dataVersion": "1", "data": {"clientAuthenticationName": "a"}}, "no time"),
    ({"specversion": "1.0", "id": "x5", "source": "/ns", "type": "Microsoft.EventGrid.MQTTClientSessionConnected",
      "time": "2026-11-20T08:00:00Z", "subject": "clients/a", "traceparent": "00-ab-cd-01",
      "data": {"sequenceNumber": 1}}, "invalid"),
])
def test_an_event_that_can_never_apply_is_dead_lettered_with_its_reason(
        run: Any, document: dict[str, Any], reason: str) -> None:
    deliver(run, document, document)  # the invocation succeeds, twice
    letters = [d for d in dead_letters(run, "lifecycle") if d["eventGrid"]["id"] == document["id"]]
    assert len(letters) == 1, "a redelivery rewrites the same dead letter"
    letter = letters[0]
    assert reason in letter["reason"]
    assert letter["stream"] == "lifecycle"
    assert orjson.loads(letter["body"])["data"] == document["data"]
    assert letter["_name"].startswith("lifecycle/") and "receivedAt" in letter


def test_a_storage_failure_fails_the_invocation_so_event_grid_retries(run: Any) -> None:
    dev = new_id()
    with unreachable_storage(run), pytest.raises(AzureError):
        deliver(run, ev.connected(dev, 1, T0))
    deliver(run, ev.connected(dev, 1, T0))  # Event Grid's retry
    assert device(run, dev)["connected"] is True


def test_concurrent_events_for_one_device_lose_nothing(run: Any) -> None:
    import asyncio

    dev = new_id()
    handler = user_function("client_lifecycle")
    documents = []
    for seq in range(1, 11):
        at = T0 + timedelta(minutes=10 * seq)
        documents += [ev.connected(dev, seq, at), ev.disconnected(dev, seq, at + timedelta(minutes=5))]
    documents.append(ev.connected(dev, 11, T0 + timedelta(hours=3)))

    async def all_at_once() -> None:
        await asyncio.gather(*(handler(ev.to_function_event(d)) for d in documents))

    run(all_at_once())
    body = device(run, dev)
    assert (body["connected"], body["sequenceNumber"]) == (True, 11)
    assert len(body["connectionHistory"]) == 20  # the history limit, newest kept
    assert body["connectionHistory"][-1]["sequenceNumber"] == 11


@pytest.mark.parametrize("device_id", [
    "a/b\\c#d?e'f%g~h", "ünïcødé-☃-设备", "tab\there", "x" * 128, "~7E", "'; DROP TABLE devices; --",
    "RowKey eq 'registry'", "%2F..%2F",
])
def test_any_client_authentication_name_is_stored_safely(run: Any, device_id: str) -> None:
    deliver(run, ev.created_or_updated(device_id, T0, attributes={"k": "v"}), ev.connected(device_id, 1, T0))
    body = device(run, device_id)
    assert body["deviceId"] == device_id
    assert body["connected"] is True
    assert run(DeviceRegistry(data_store()).get(device_id)) is not None
    assert all(c not in device_key(device_id) for c in "/\\#?\t'%")


def test_keys_of_distinct_ids_never_collide() -> None:
    ids = ["a~2Fb", "a/b", "a~7E2Fb", "~", "~~", "%", "'"]
    assert len({device_key(i) for i in ids}) == len(ids)
