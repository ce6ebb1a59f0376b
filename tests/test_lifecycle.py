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

from shared.lifecycle.registry import DeviceRegistry
from shared.platform.keys import device_key
from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER
from standins import event_factory as ev
from standins.invoke import FunctionFailed
from tests.support.harness import (
    deliver,
    failing_requests,
    http_request,
    json_of,
    storage_requests,
    unreachable_storage,
    user_function,
)

pytestmark = pytest.mark.usefixtures("app_env")
# How the worker reports a storage failure of the function (type name and message).
STORAGE_FAILURE = "ServiceRequestError|ServiceResponseError|HttpResponseError"
# Two days ago at 08:00 UTC: alerts can be listed up to 90 days back.
T0 = (datetime.now(UTC) - timedelta(days=2)).replace(hour=8, minute=0, second=0, microsecond=0)
SINCE = (T0 - timedelta(days=30)).isoformat().replace("+00:00", "Z")
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
        http_request("GET", "alerts", params={"deviceId": device_id, "since": SINCE})))
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
    assert body["lastConnectedAt"].startswith(T0.strftime("%Y-%m-%dT08:00:00"))
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


def test_client_metadata_is_the_newest_by_updated_on(run: Any) -> None:
    dev = new_id()
    deliver(run,
            ev.created_or_updated(dev, T0 + timedelta(hours=2), created_on=T0, attributes={"site": "b"}),
            ev.created_or_updated(dev, T0 + timedelta(hours=1), created_on=T0, attributes={"site": "a"}))
    assert device(run, dev)["attributes"] == {"site": "b"}


@pytest.mark.parametrize("reverse", [False, True])
def test_two_updates_stamped_alike_are_ordered_by_content_not_by_arrival(run: Any, reverse: bool) -> None:
    dev = new_id()
    same_time = [ev.created_or_updated(dev, T0, created_on=T0, attributes={"site": "b"}),
                 ev.created_or_updated(dev, T0, created_on=T0, state="Disabled", attributes={"site": "c"})]
    deliver(run, *(same_time[::-1] if reverse else same_time))
    body = device(run, dev)
    assert (body["state"], body["attributes"]) == ("Disabled", {"site": "c"}), "a disable wins a tie"


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
    assert body["lastDisconnectedAt"].startswith(T0.strftime("%Y-%m-%dT08:09"))


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
    with unreachable_storage(run), pytest.raises(FunctionFailed, match=STORAGE_FAILURE):
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
        await asyncio.gather(*(handler(d) for d in documents))

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
    assert run(DeviceRegistry(data_store()).record(device_id)) is not None
    assert all(c not in device_key(device_id) for c in "/\\#?\t'%")


def test_keys_of_distinct_ids_never_collide() -> None:
    ids = ["a~2Fb", "a/b", "a~7E2Fb", "~", "~~", "%", "'"]
    assert len({device_key(i) for i in ids}) == len(ids)


# --- The second pass: what a hostile review found ----------------------------------

def alert_count(run: Any, device_id: str, rule: str = "disconnectionReason") -> int:
    return len([a for a in alerts_of(run, device_id) if a["rule"] == rule])


def test_a_recreated_client_restarts_presence_even_when_no_delete_came_before_the_create(run: Any) -> None:
    dev = new_id()
    t_c = T0 + timedelta(hours=3)
    old_sessions = []
    for seq in (1, 2, 3):
        old_sessions += [ev.connected(dev, seq, T0 + timedelta(minutes=10 * seq)),
                         ev.disconnected(dev, seq, T0 + timedelta(minutes=10 * seq + 5))]
    deliver(run, ev.created_or_updated(dev, T0), *old_sessions, ev.created_or_updated(dev, t_c, created_on=t_c),
            ev.deleted(dev, t_c - timedelta(minutes=1)),
            ev.connected(dev, 1, t_c + timedelta(minutes=1), session="new"))
    body = device(run, dev)
    assert (body["connected"], body["sequenceNumber"], body["sessionName"], body["deleted"]) == (True, 1, "new", False)


def test_a_failed_retraction_is_repaired_by_the_redelivered_disable(run: Any) -> None:
    dev = new_id()
    deliver(run, ev.created_or_updated(dev, T0), ev.connected(dev, 1, T0),
            ev.disconnected(dev, 1, T0 + timedelta(hours=1), reason="ClientAuthenticationError"))
    assert alert_count(run, dev) == 1
    disable = ev.created_or_updated(dev, T0 + timedelta(hours=1), created_on=T0, state="Disabled")
    with failing_requests(run, "DELETE", "/alerts(") as failed, pytest.raises(FunctionFailed, match=STORAGE_FAILURE):
        deliver(run, disable)  # the registry is written, the retraction fails: Event Grid retries
    assert failed, "the retraction was attempted"
    assert device(run, dev)["state"] == "Disabled"
    deliver(run, disable)  # the redelivery finds nothing new in the registry, and retracts all the same
    assert alert_count(run, dev) == 0


@pytest.mark.parametrize("attempt", range(5))
def test_a_refusal_and_a_disable_delivered_at_once_leave_no_alert(run: Any, attempt: int) -> None:
    import asyncio

    dev = new_id()
    deliver(run, ev.created_or_updated(dev, T0), ev.connected(dev, 1, T0))
    handler = user_function("client_lifecycle")
    refusal = ev.disconnected(dev, 1, T0 + timedelta(hours=1), reason="ClientAuthenticationError")
    disable = ev.created_or_updated(dev, T0 + timedelta(hours=1), created_on=T0, state="Disabled")

    async def at_once() -> tuple[Any, ...]:
        return await asyncio.gather(handler(refusal), handler(disable), return_exceptions=True)

    # An add that meets the disable's remove fails its invocation (Contention), and
    # Event Grid delivers a failed event again: so does this test, after both have run.
    for event, outcome in zip((refusal, disable), run(at_once()), strict=True):
        if isinstance(outcome, BaseException):
            assert "Contention" in str(outcome), outcome
            deliver(run, event)
    assert alert_count(run, dev) == 0


def test_a_later_enable_brings_back_a_refusal_alert_that_an_earlier_disable_explained(run: Any) -> None:
    dev = new_id()
    refusal_at = T0 + timedelta(hours=2)
    deliver(run, ev.created_or_updated(dev, T0), ev.connected(dev, 1, T0),
            ev.created_or_updated(dev, T0 + timedelta(hours=1), created_on=T0, state="Disabled"),
            ev.disconnected(dev, 1, refusal_at, reason="ClientAuthenticationError"))
    assert alert_count(run, dev) == 0, "disabled at the time of the refusal"
    # The client had been enabled again before the refusal: the refusal was trouble.
    deliver(run, ev.created_or_updated(dev, refusal_at - timedelta(minutes=5), created_on=T0, state="Enabled"))
    assert alert_count(run, dev) == 1


@pytest.mark.parametrize("field, value, reason", [
    ("updatedOn", "2026-11-20T09:00:00", "time zone"),
    ("updatedOn", "0001-01-01T00:00:00Z", "must lie between"),
    ("createdOn", "9999-12-31T23:59:59-01:00", "must lie between"),
    ("updatedOn", "20261120T090000Z", "RFC 3339"),
])
def test_a_timestamp_without_a_zone_or_out_of_range_is_dead_lettered_and_poisons_nothing(
        run: Any, field: str, value: str, reason: str) -> None:
    dev = new_id()
    bad = ev.created_or_updated(dev, T0)
    bad["data"][field] = value
    bad["id"] = new_id("bad-time")
    deliver(run, bad)
    letters = [d for d in dead_letters(run, "lifecycle") if d["eventGrid"]["id"] == bad["id"]]
    assert len(letters) == 1 and reason in str(letters[0]["errors"])
    deliver(run, ev.created_or_updated(dev, T0), ev.connected(dev, 1, T0 + timedelta(minutes=1)))
    assert device(run, dev)["connected"] is True, "later events of the device still apply"


def test_an_event_time_without_a_zone_is_dead_lettered(run: Any) -> None:
    document = ev.connected(new_id(), 1, T0)
    document["eventTime"] = "2026-11-20T08:00:00"
    deliver(run, document)
    letters = [d for d in dead_letters(run, "lifecycle") if d["eventGrid"]["id"] == document["id"]]
    assert len(letters) == 1 and "time zone" in letters[0]["reason"]


def test_attributes_too_large_for_a_table_row_are_dead_lettered_not_retried(run: Any) -> None:
    dev = new_id()
    deliver(run, ev.created_or_updated(dev, T0, attributes={"site": "a"}))
    huge = ev.created_or_updated(dev, T0 + timedelta(hours=1), created_on=T0, attributes={"blob": "x" * 75_000})
    deliver(run, huge)  # no exception: Event Grid must not retry this for a day
    letters = [d for d in dead_letters(run, "lifecycle") if d["eventGrid"]["id"] == huge["id"]]
    assert len(letters) == 1 and "attributes" in letters[0]["reason"]
    assert device(run, dev)["attributes"] == {"site": "a"}, "nothing half-written"


def test_a_write_that_storage_refuses_for_what_it_is_is_dead_lettered(run: Any, monkeypatch: Any) -> None:
    from shared.lifecycle import events, registry

    # Let an over-large entry through our own bounds, so that Table storage itself refuses it (400).
    monkeypatch.setattr(events, "MAX_ATTRIBUTES_BYTES", 10**9)
    monkeypatch.setattr(registry, "MAX_PROPERTY_BYTES", 10**9)
    dev = new_id()
    huge = ev.created_or_updated(dev, T0, attributes={"blob": "x" * 300_000})
    deliver(run, huge)
    letters = [d for d in dead_letters(run, "lifecycle") if d["eventGrid"]["id"] == huge["id"]]
    assert len(letters) == 1 and "storage refused the write (HTTP 4" in letters[0]["reason"]


def test_connected_true_reads_the_index_not_the_fleet(run: Any, empty_registry: None) -> None:
    online, offline = [new_id("on") for _ in range(3)], [new_id("off") for _ in range(12)]
    for dev in online + offline:
        deliver(run, ev.created_or_updated(dev, T0), ev.connected(dev, 1, T0))
    for dev in offline:
        deliver(run, ev.disconnected(dev, 1, T0 + timedelta(minutes=5)))
    with storage_requests(run) as requests:
        response = run(user_function("list_devices")(http_request("GET", "devices", params={"connected": "true"})))
    assert sorted(d["deviceId"] for d in json_of(response)["items"]) == sorted(online)
    table_requests = requests.to("/devices")
    assert len(table_requests) <= 1 + len(online), "one index query and one read per connected device"
    queries = [path for _, path in table_requests if "/devices()" in path]
    assert len(queries) == 1 and "PartitionKey eq" in queries[0], "one partition read, no scan of the whole table"


@pytest.mark.parametrize("attempt", range(6))  # a race: several tries
def test_the_connected_index_follows_reordered_and_concurrent_sessions(
        run: Any, empty_registry: None, attempt: int) -> None:
    import asyncio

    dev = new_id()
    handler = user_function("client_lifecycle")
    documents = []
    for seq in range(1, 7):
        at = T0 + timedelta(minutes=10 * seq)
        documents += [ev.connected(dev, seq, at), ev.disconnected(dev, seq, at + timedelta(minutes=5))]
    documents.append(ev.connected(dev, 7, T0 + timedelta(hours=2)))

    async def all_at_once() -> None:
        await asyncio.gather(*(handler(d) for d in documents[::-1]))

    run(all_at_once())
    listed = json_of(run(user_function("list_devices")(http_request("GET", "devices", params={"connected": "true"}))))
    assert [d["deviceId"] for d in listed["items"]] == [dev]
    deliver(run, ev.disconnected(dev, 7, T0 + timedelta(hours=3)))
    listed = json_of(run(user_function("list_devices")(http_request("GET", "devices", params={"connected": "true"}))))
    assert listed["items"] == []
