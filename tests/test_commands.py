"""Cloud-to-edge commands end to end: the HTTP API as the worker calls it, Azurite,
Mosquitto, real MQTT v5 device clients that answer, and their answers routed back
to command_responses as Event Grid would; over both transports."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from standins import event_factory as ev
from standins.edge import Device, ResponseRouter
from standins.services import Mosquitto
from tests.support.commands import T0, command, dead_letter_reasons, online, send
from tests.support.harness import changed_settings, deliver, http_request, json_of, user_function


@pytest.fixture(params=["mqtt", "eventgrid"])
def transport(request: Any, app_env: Any, mosquitto: Mosquitto, run: Any) -> Iterator[str]:
    """The app publishing through the MQTT transport, or through HTTP Publish to a
    stand-in of the Event Grid broker that checks each request and forwards it (the
    Entra token comes from a test credential: nothing here can issue one)."""
    from shared.commands import transports

    run(transports.reset_transport())
    if request.param == "mqtt":
        yield "mqtt"
        run(transports.reset_transport())
        return
    from shared.commands.eventgrid_transport import EventGridTransport
    from standins.httppublish import run_httppublish
    from tests.support.transports import GRANTS, TOKEN, RecordingCredential

    stand_in = run_httppublish(mosquitto.url, GRANTS)
    server = run(stand_in.__aenter__())
    try:
        with changed_settings(run, {"COMMAND_TRANSPORT": "eventgrid",
                                    "EVENTGRID_MQTT_HOSTNAME": "evgns-edge.westeurope-1.ts.eventgrid.azure.net"}):
            transports._transport = EventGridTransport(  # the process's transport, pointed at the stand-in
                "evgns-edge.westeurope-1.ts.eventgrid.azure.net", RecordingCredential(TOKEN), base_url=server.url)
            yield "eventgrid"
            run(transports.reset_transport())
    finally:
        run(stand_in.__aexit__(None, None, None))


@pytest.fixture
def router(mosquitto: Mosquitto) -> Iterator[ResponseRouter]:
    routing = ResponseRouter(mosquitto.url)
    yield routing
    routing.close()


@pytest.mark.parametrize("behaviour, status", [("succeed", "succeeded"), ("fail", "failed"), ("reject", "rejected")])
def test_a_command_is_published_answered_and_tracked(run: Any, mosquitto: Mosquitto, transport: str,
                                                      router: ResponseRouter, behaviour: str, status: str) -> None:
    device = online(run, mosquitto, behaviour)
    try:
        response = send(run, device.device_id, {"name": "reboot", "payload": {"delaySeconds": 5}, "timeoutSeconds": 60},
                        headers={"X-MS-CLIENT-PRINCIPAL-NAME": "ops@example.com"})
        assert response.status_code == 202, response.get_body()
        sent = json_of(response)
        # No App Service authentication here: a header the caller sent is no identity.
        assert (sent["status"], sent["issuedBy"], sent["name"]) == ("sent", "function-key", "reboot")
        assert response.headers["Location"] == f"/api/devices/{device.device_id}/commands/{sent['commandId']}"
        [received] = device.wait_for(1)
        assert received.topic == f"devices/{device.device_id}/commands/reboot"
        assert received.payload == {"commandId": sent["commandId"], "name": "reboot", "payload": {"delaySeconds": 5},
                                    "issuedAt": sent["createdAt"], "expiresAt": sent["expiresAt"]}
        props = received.properties
        assert props["ResponseTopic"] == f"devices/{device.device_id}/commands/{sent['commandId']}/response"
        assert props["CorrelationData"] == sent["commandId"].encode()
        assert props["ContentType"] == "application/json"
        assert ("commandId", sent["commandId"]) in props["UserProperty"]
        assert 55 <= props["MessageExpiryInterval"] <= 60
        assert run(router.deliver(expect=1)) == 1
        done = command(run, device.device_id, sent["commandId"])
        assert done["status"] == status and done["completedAt"]
        assert ("result" in done) == (status == "succeeded") and ("error" in done) == (status != "succeeded")
    finally:
        device.disconnect()


def test_a_silent_device_lets_the_command_expire_on_time(run: Any, mosquitto: Mosquitto, router: ResponseRouter,
                                                          transport: str) -> None:
    device = online(run, mosquitto, "silent")
    try:
        sent = json_of(send(run, device.device_id, {"name": "ping", "timeoutSeconds": 1}))
        device.wait_for(1)
        time.sleep(1.2)
        run(user_function("command_expiry")(None))
        assert command(run, device.device_id, sent["commandId"])["status"] == "expired"
        run(user_function("command_expiry")(None))  # again: nothing left to do
        assert command(run, device.device_id, sent["commandId"])["status"] == "expired"
    finally:
        device.disconnect()


def registered(run: Any, *, state: str = "Enabled", attributes: dict[str, Any] | None = None) -> str:
    """A device in the registry that has never connected."""
    device_id = f"off-{uuid.uuid4().hex[:8]}"
    deliver(run, ev.created_or_updated(device_id, T0, state=state, attributes=attributes or {}))
    return device_id


def test_commands_for_an_offline_device_wait_and_go_out_in_order_when_it_connects(
        run: Any, mosquitto: Mosquitto, router: ResponseRouter, transport: str) -> None:
    device = Device(registered(run), mosquitto.url)
    first = json_of(send(run, device.device_id, {"name": "first"}))
    short = json_of(send(run, device.device_id, {"name": "short", "timeoutSeconds": 1}))
    dropped = json_of(send(run, device.device_id, {"name": "dropped"}))
    last = json_of(send(run, device.device_id, {"name": "last"}))
    assert {c["status"] for c in (first, short, dropped, last)} == {"pending"}
    cancel = run(user_function("cancel_command")(http_request(
        "POST", "cancel", route_params={"deviceId": device.device_id, "commandId": dropped["commandId"]})))
    assert json_of(cancel)["status"] == "cancelled"
    time.sleep(1.2)  # "short" is overdue by now
    device.connect()  # subscribe first, then the broker reports the session
    try:
        deliver(run, ev.connected(device.device_id, 1, datetime.now(UTC)))
        received = device.wait_for(2)
        time.sleep(0.3)
        assert [r.payload["name"] for r in device.commands] == ["first", "last"], "in order, none skipped twice"
        assert run(router.deliver(expect=2)) == 2
        statuses = {c["name"]: command(run, device.device_id, c["commandId"])["status"]
                    for c in (first, short, dropped, last)}
        assert statuses == {"first": "succeeded", "short": "expired", "dropped": "cancelled", "last": "succeeded"}
        assert len(received) == 2
        deliver(run, ev.disconnected(device.device_id, 1, datetime.now(UTC)),
                ev.connected(device.device_id, 2, datetime.now(UTC)))
        time.sleep(0.3)
        assert len(device.commands) == 2, "a later connect publishes nothing again"
    finally:
        device.disconnect()


@pytest.mark.parametrize("body, status, detail", [
    ({"name": "telemetry"}, 400, "reserved"),
    ({"name": "Response"}, 400, "reserved"),
    ({"name": "bad name!"}, 400, "name"),
    ({"name": "x", "timeoutSeconds": 0}, 400, "timeoutSeconds"),
    ({"name": "x", "timeoutSeconds": "5"}, 400, "timeoutSeconds"),
    ({"name": "x", "extra": 1}, 400, "extra"),
    ({"name": "x", "payload": "y" * 300_000}, 413, "bytes"),
])
def test_a_bad_request_is_a_problem_that_says_why(run: Any, app_env: Any, body: dict[str, Any], status: int,
                                                   detail: str) -> None:
    response = send(run, registered(run), body)
    assert response.status_code == status, response.get_body()
    assert response.mimetype == "application/problem+json" and detail in json_of(response)["detail"]


def test_unknown_disabled_deleted_and_uncommandable_devices_are_refused(run: Any, app_env: Any) -> None:
    assert send(run, "nobody-here", {"name": "x"}).status_code == 404
    assert send(run, registered(run, state="Disabled"), {"name": "x"}).status_code == 409
    gone = registered(run)
    deliver(run, ev.deleted(gone, T0 + timedelta(minutes=5)))
    assert "deleted" in json_of(send(run, gone, {"name": "x"}))["detail"]
    assert send(run, "a+b", {"name": "x"}).status_code == 400


@pytest.mark.parametrize("device_id", ["a/b", "a+b", "a#b", "tab\there", "c1\x85"])
def test_every_command_route_refuses_an_id_no_command_can_have_with_a_400(run: Any, app_env: Any,
                                                                          device_id: str) -> None:
    """The OpenAPI document gives the command routes' deviceId the pattern of a topic
    level; a listing of such a device's commands is refused as sending one is."""
    command_id = "4d7e1a0c-2b8f-4f3e-9c1d-5a6b7c8d9e0f"
    for name, method, params in (("list_commands", "GET", {}), ("get_command", "GET", {"commandId": command_id}),
                                 ("cancel_command", "POST", {"commandId": command_id})):
        response = run(user_function(name)(http_request(method, "x", route_params={"deviceId": device_id,
                                                                                     **params})))
        assert response.status_code == 400 and "cannot be commanded" in json_of(response)["detail"], name
    assert send(run, device_id, {"name": "x"}).status_code == 400


def test_an_offline_device_is_refused_under_the_reject_policy(run: Any, app_env: Any) -> None:
    with changed_settings(run, {"OFFLINE_COMMAND_POLICY": "reject"}):
        response = send(run, registered(run), {"name": "x"})
    assert response.status_code == 409 and "offline" in json_of(response)["detail"]


def test_an_idempotency_key_makes_one_command_however_often_and_concurrently_it_comes(
        run: Any, mosquitto: Mosquitto, transport: str) -> None:
    import asyncio

    device = online(run, mosquitto, "silent")
    try:
        handler = user_function("send_command")

        def request(body: dict[str, Any]) -> Any:
            return http_request("POST", "x", route_params={"deviceId": device.device_id}, body=body,
                                headers={"Idempotency-Key": "order-42"})

        async def eight() -> list[Any]:
            return list(await asyncio.gather(*(handler(request({"name": "open"})) for _ in range(8))))

        responses = run(eight())
        assert sorted(r.status_code for r in responses) == [200] * 7 + [202]
        assert len({json_of(r)["commandId"] for r in responses}) == 1
        again = run(handler(request({"name": "open"})))
        assert again.status_code == 200 and json_of(again)["idempotencyKey"] == "order-42"
        assert run(handler(request({"name": "close"}))).status_code == 409
        time.sleep(0.3)
        assert len(device.wait_for(1)) == 1, "published once"
    finally:
        device.disconnect()


def test_a_broker_that_cannot_be_reached_is_a_503_and_the_command_is_failed(run: Any, app_env: Any) -> None:
    from shared.commands.transports import reset_transport
    from standins.services import free_port

    device = registered(run)
    deliver(run, ev.connected(device, 1, T0 + timedelta(minutes=1)))  # the registry says connected
    with changed_settings(run, {"MQTT_BROKER_URL": f"mqtt://127.0.0.1:{free_port()}"}):
        run(reset_transport())
        response = send(run, device, {"name": "x"})
        run(reset_transport())
    assert response.status_code == 503 and response.headers["Retry-After"]
    listed = json_of(run(user_function("list_commands")(http_request(
        "GET", "x", route_params={"deviceId": device}))))["items"]
    assert [(c["status"], c["error"]["reason"] != "") for c in listed] == [("failed", True)]


def test_cancel_is_409_once_terminal_and_a_late_answer_is_kept_without_changing_it(
        run: Any, mosquitto: Mosquitto, router: ResponseRouter, transport: str) -> None:
    device = online(run, mosquitto, "succeed")
    try:
        sent = json_of(send(run, device.device_id, {"name": "slow"}))
        device.wait_for(1)

        def cancel() -> Any:
            return run(user_function("cancel_command")(http_request(
                "POST", "x", route_params={"deviceId": device.device_id, "commandId": sent["commandId"]})))

        assert json_of(cancel())["status"] == "cancelled"
        assert cancel().status_code == 409
        assert run(router.deliver(expect=1)) == 1
        late = command(run, device.device_id, sent["commandId"])
        assert late["status"] == "cancelled" and late["lateResponse"]["status"] == "succeeded"
    finally:
        device.disconnect()


def test_answers_that_are_duplicated_spoofed_or_unknown_change_nothing(run: Any, mosquitto: Mosquitto,
                                                                       transport: str) -> None:
    from standins.eventhub_factory import Partition, routed_body
    from standins.invoke import InvocationContext

    device = online(run, mosquitto, "silent")
    try:
        sent = json_of(send(run, device.device_id, {"name": "x"}))
        cid = sent["commandId"]
        answer = {"commandId": cid, "status": "succeeded", "result": {"n": 1}}
        hub = Partition(f"responses-{uuid.uuid4().hex[:6]}", "0")
        hub.publish([
            routed_body(answer, topic=f"devices/{device.device_id}/commands/{cid}/response", at=T0),
            routed_body(answer | {"status": "failed"}, topic=f"devices/intruder/commands/{cid}/response", at=T0),
            routed_body({"commandId": "0196c3c2-0000-7000-8000-000000000000", "status": "failed"},
                        topic=f"devices/{device.device_id}/commands/0196c3c2-0000-7000-8000-000000000000/response",
                        at=T0),
            routed_body({"commandId": cid, "status": "maybe"},
                        topic=f"devices/{device.device_id}/commands/{cid}/response", at=T0),
            routed_body(answer | {"status": "failed"}, topic=f"devices/{device.device_id}/commands/{cid}/response",
                        at=T0),
        ])
        run(user_function("command_responses")(hub.deliver(), InvocationContext("command_responses")))
        run(user_function("command_responses")(hub.deliver(), InvocationContext("command_responses")))
        done = command(run, device.device_id, cid)
        assert (done["status"], done["result"]) == ("succeeded", {"n": 1})
        assert done["lateResponse"]["status"] == "failed", "the second, different answer is kept as late"
        letters = dead_letter_reasons(run, hub.hub)
        assert any("spoofed" in r for r in letters) and any("no command" in r for r in letters), letters
        assert any("status" in r for r in letters) and len(letters) == 3
    finally:
        device.disconnect()


def fleet(run: Any, body: dict[str, Any]) -> Any:
    return run(user_function("send_fleet_command")(http_request("POST", "commands", body=body)))


def job(run: Any, job_id: str) -> dict[str, Any]:
    response = run(user_function("get_fleet_command")(http_request("GET", "x", route_params={"jobId": job_id})))
    assert response.status_code == 200, response.get_body()
    return json_of(response)  # type: ignore[no-any-return]


def test_a_fleet_job_of_50_devices_tracks_every_command(run: Any, mosquitto: Mosquitto, router: ResponseRouter,
                                                         transport: str) -> None:
    devices = [online(run, mosquitto, "succeed" if n % 3 else "reject") for n in range(30)]
    offline = [registered(run) for _ in range(20)]
    try:
        response = fleet(run, {"name": "update", "payload": {"v": 2},
                               "target": {"deviceIds": [d.device_id for d in devices] + offline + ["nobody"]}})
        assert response.status_code == 202, response.get_body()
        created = json_of(response)
        assert created["total"] == 51 and created["fanout"] == "done"
        for device in devices:
            device.wait_for(1)
        assert run(router.deliver(expect=30)) == 30
        counts = job(run, created["jobId"])["counts"]
        assert counts == {"succeeded": 20, "rejected": 10, "pending": 20, "failed": 1}
        again = fleet(run, {"name": "update", "target": {"deviceIds": ["nobody"]}})
        assert json_of(again)["counts"] == {"failed": 1}
    finally:
        for device in devices:
            device.disconnect()


def test_a_fleet_jobs_counts_follow_its_commands_that_expire_are_cancelled_or_go_out_on_connect(
        run: Any, mosquitto: Mosquitto, transport: str) -> None:
    silent = online(run, mosquitto, "silent")
    asleep, wakes = registered(run), Device(registered(run), mosquitto.url, behaviour="silent")
    try:
        short = json_of(fleet(run, {"name": "probe", "timeoutSeconds": 1,
                                    "target": {"deviceIds": [silent.device_id]}}))
        waiting = json_of(fleet(run, {"name": "update", "target": {"deviceIds": [asleep, wakes.device_id]}}))
        assert (short["counts"], waiting["counts"]) == ({"sent": 1}, {"pending": 2})
        [queued] = json_of(run(user_function("list_commands")(http_request(
            "GET", "x", route_params={"deviceId": asleep}))))["items"]
        cancelled = run(user_function("cancel_command")(http_request(
            "POST", "x", route_params={"deviceId": asleep, "commandId": queued["commandId"]})))
        assert cancelled.status_code == 200
        wakes.connect()
        deliver(run, ev.connected(wakes.device_id, 1, T0 + timedelta(minutes=1)))  # its queue goes out
        wakes.wait_for(1)
        silent.wait_for(1)
        time.sleep(1.2)
        run(user_function("command_expiry")(None))
        assert job(run, short["jobId"])["counts"] == {"expired": 1}
        assert job(run, waiting["jobId"])["counts"] == {"cancelled": 1, "sent": 1}
    finally:
        silent.disconnect()
        wakes.disconnect()


def test_a_fleet_jobs_member_row_never_moves_back_when_the_fan_outs_write_comes_after_the_answer(
        run: Any, mosquitto: Mosquitto, router: ResponseRouter, transport: str) -> None:
    """The fan-out records a command sent after publishing it; the device's answer may be
    recorded first. The late "sent" must not undo "succeeded" in the job's counts."""
    from shared.commands.jobs import sync_job_member
    from shared.commands.models import Command
    from shared.platform.storage import data_store

    device = online(run, mosquitto, "succeed")
    try:
        created = json_of(fleet(run, {"name": "update", "target": {"deviceIds": [device.device_id]}}))
        device.wait_for(1)
        assert run(router.deliver(expect=1)) == 1
        assert job(run, created["jobId"])["counts"] == {"succeeded": 1}
        [answered] = json_of(run(user_function("list_commands")(http_request(
            "GET", "x", route_params={"deviceId": device.device_id}))))["items"]
        late = Command.model_validate(answered | {"status": "sent", "result": None, "completedAt": None})
        run(sync_job_member(data_store(), late))  # the fan-out's write, arriving last
        assert job(run, created["jobId"])["counts"] == {"succeeded": 1}
    finally:
        device.disconnect()


def test_a_fleet_job_of_2000_devices_by_attribute_continues_through_the_queue(run: Any, app_env: Any) -> None:
    import asyncio

    from standins.invoke import drain_queue

    line = f"line-{uuid.uuid4().hex[:6]}"
    handler = user_function("client_lifecycle")
    events = [ev.created_or_updated(f"{line}-{n:04d}", T0, attributes={"line": line, "type": "camera"})
              for n in range(2000)]
    events.append(ev.created_or_updated(f"{line}-other", T0, attributes={"line": line, "type": "plc"}))

    async def register() -> None:
        for i in range(0, len(events), 64):
            await asyncio.gather(*(handler(e) for e in events[i:i + 64]))

    run(register())
    response = fleet(run, {"name": "snapshot", "target": {"attributes": {"line": line, "type": "camera"}}})
    assert response.status_code == 202, response.get_body()
    created = json_of(response)
    assert created["total"] == 2000 and created["fanout"] == "running"
    assert created["counts"]["queued"] == 2000 - 200, "the 202 did not wait for the whole fleet"
    handled = run(drain_queue("fleet-fanout", "fleet_fanout"))
    assert handled == 18
    done = job(run, created["jobId"])
    assert done["counts"] == {"pending": 2000} and done["fanout"] == "done"


def test_a_broadcast_reaches_its_group_only_and_is_listed(run: Any, mosquitto: Mosquitto, transport: str) -> None:
    group = f"g{uuid.uuid4().hex[:6]}"
    inside = Device(f"in-{uuid.uuid4().hex[:6]}", mosquitto.url, group=group)
    other = Device(f"out-{uuid.uuid4().hex[:6]}", mosquitto.url, group=group + "x")
    for device in (inside, other):
        device.connect()
    try:
        def broadcast(body: dict[str, Any]) -> Any:
            return run(user_function("send_broadcast")(http_request("POST", "broadcasts", body=body)))

        response = broadcast({"name": "maintenance", "payload": {"window": "02:00"}, "ttlSeconds": 600,
                              "group": group})
        assert response.status_code == 202, response.get_body()
        sent = json_of(response)
        assert sent["topic"] == f"groups/{group}/broadcast/maintenance" and sent["issuedBy"] == "function-key"
        [received] = inside.wait_for(1, what="broadcasts")
        assert received.payload["broadcastId"] == sent["broadcastId"]
        assert 595 <= received.properties["MessageExpiryInterval"] <= 600
        assert json_of(broadcast({"name": "notice"}))["topic"] == "broadcast/notice"
        inside.wait_for(2, what="broadcasts")
        other.wait_for(1, what="broadcasts")
        time.sleep(0.2)
        assert [b.topic for b in other.broadcasts] == ["broadcast/notice"], "another group's broadcast never came"
        listed = json_of(run(user_function("list_broadcasts")(http_request("GET", "broadcasts",
                                                                           params={"limit": "2"}))))["items"]
        assert [b["name"] for b in listed] == ["notice", "maintenance"]
        assert broadcast({"name": "x", "ttlSeconds": 0}).status_code == 400
    finally:
        for device in (inside, other):
            device.disconnect()


@pytest.mark.parametrize("attempt", range(4))
def test_an_answer_the_expiry_timer_and_a_cancel_at_once_leave_one_terminal_status(
        run: Any, mosquitto: Mosquitto, transport: str, attempt: int) -> None:
    import asyncio

    from standins.eventhub_factory import Partition, routed_body
    from standins.invoke import InvocationContext

    device = online(run, mosquitto, "silent")
    try:
        sent = json_of(send(run, device.device_id, {"name": "race", "timeoutSeconds": 1}))
        cid = sent["commandId"]
        time.sleep(1.1)
        hub = Partition(f"race-{uuid.uuid4().hex[:6]}", "0")
        hub.publish([routed_body({"commandId": cid, "status": "succeeded"},
                                 topic=f"devices/{device.device_id}/commands/{cid}/response", at=T0)])

        async def at_once() -> None:
            await asyncio.gather(
                user_function("command_responses")(hub.deliver(), InvocationContext("command_responses")),
                user_function("command_expiry")(None),
                user_function("cancel_command")(http_request(
                    "POST", "x", route_params={"deviceId": device.device_id, "commandId": cid})))

        run(at_once())
        final = command(run, device.device_id, cid)
        assert final["status"] in ("succeeded", "expired", "cancelled")
        assert ("lateResponse" in final) == (final["status"] != "succeeded"), "the answer is never lost"
        run(at_once())  # all of it again: a terminal status never changes
        assert command(run, device.device_id, cid)["status"] == final["status"]
    finally:
        device.disconnect()


def test_the_expiry_timer_reads_only_what_is_due(run: Any, app_env: Any) -> None:
    from tests.support.harness import storage_requests

    device = registered(run)
    for _ in range(30):  # pending for a day: not due
        send(run, device, {"name": "later", "timeoutSeconds": 86400})
    run(user_function("command_expiry")(None))  # clear what earlier tests left due
    with storage_requests(run) as requests:
        run(user_function("command_expiry")(None))
    commands_requests = requests.to("/commands")
    assert len(commands_requests) == 1, "one range query of the due minutes, nothing per command"


@pytest.mark.parametrize("command_id, status", [
    ("a/b", 400), ("not-a-uuid", 400), ("0196c3c2-0000-7000-8000-00000000000", 400),  # malformed
    ("{0196c3c2-0000-7000-8000-000000000000}", 400), ("0196c3c200007000800000000000000", 400),
    ("4d7e1a0c-2b8f-4f3e-9c1d-5a6b7c8d9e0f", 404),  # a well-formed UUID v4: never issued
    ("0196c3c2-0000-7000-8000-000000000000", 404),  # a v7 never issued
    ("0196C3C2-0000-7000-8000-000000000000", 404),  # UUIDs are case-insensitive (RFC 9562)
])
def test_a_command_id_that_was_never_issued_is_404_and_a_malformed_one_400_at_once(
        run: Any, app_env: Any, command_id: str, status: int) -> None:
    device = registered(run)
    started = time.monotonic()
    for name, method in (("get_command", "GET"), ("cancel_command", "POST")):
        response = run(user_function(name)(http_request(
            method, "x", route_params={"deviceId": device, "commandId": command_id})))
        assert response.status_code == status, (name, response.get_body())
        if status == 400:
            assert json_of(response)["errors"][0]["loc"] == ["path", "commandId"]
    assert time.monotonic() - started < 2, "answered at once, never a retry"


@pytest.mark.parametrize("job_id, status", [
    ("a/b", 400), ("a\\b", 400), ("a#b", 400), ("x" * 2000, 400), ("job", 400),
    ("4d7e1a0c-2b8f-4f3e-9c1d-5a6b7c8d9e0f", 404), ("4D7E1A0C-2B8F-4F3E-9C1D-5A6B7C8D9E0F", 404),
])
def test_a_job_id_that_was_never_issued_is_404_and_a_malformed_one_400_at_once(
        run: Any, app_env: Any, job_id: str, status: int) -> None:
    started = time.monotonic()
    response = run(user_function("get_fleet_command")(http_request("GET", "x", route_params={"jobId": job_id})))
    assert response.status_code == status, response.get_body()
    if status == 400:
        assert json_of(response)["errors"][0]["loc"] == ["path", "jobId"]
    assert time.monotonic() - started < 2, "answered at once, never a retry"


@pytest.mark.parametrize("key, status", [("k" * 256, 202), ("k" * 257, 400), ("k" * 40_000, 400), ("", 400)])
def test_an_idempotency_key_is_1_to_256_characters_as_documented(run: Any, app_env: Any, key: str,
                                                                  status: int) -> None:
    response = send(run, registered(run), {"name": "x"}, headers={"Idempotency-Key": key})
    assert response.status_code == status, response.get_body()
    if status == 400:
        problem = json_of(response)
        assert problem["errors"][0]["loc"] == ["header", "Idempotency-Key"] and "256" in problem["detail"]


def nested(levels: int) -> bytes:
    """A command body whose arrays and objects nest ``levels`` deep (the body itself is 1)."""
    return b'{"name":"deep","target":{"deviceIds":["nobody"]},"payload":' + b"[" * (levels - 1) + b"]" * (levels - 1) \
        + b"}"


@pytest.mark.parametrize("function, path", [("send_command", "devices/x/commands"), ("send_broadcast", "broadcasts"),
                                            ("send_fleet_command", "commands")])
@pytest.mark.parametrize("levels", [65, 254, 255, 600, 1023, 1024, 1025, 5000])
def test_a_body_nested_deeper_than_64_levels_is_a_400_that_says_so(run: Any, app_env: Any, function: str, path: str,
                                                                    levels: int) -> None:
    body = nested(levels)
    if function != "send_fleet_command":
        body = body.replace(b'"target":{"deviceIds":["nobody"]},', b"")
    response = run(user_function(function)(http_request("POST", path, route_params={"deviceId": registered(run)},
                                                        body=body)))
    assert response.status_code == 400, response.get_body()
    assert "nests arrays or objects more than 64 levels deep" in json_of(response)["detail"]


def test_a_body_nested_64_levels_deep_is_accepted(run: Any, app_env: Any) -> None:
    device = registered(run)
    body = nested(64).replace(b'"target":{"deviceIds":["nobody"]},', b"")
    response = run(user_function("send_command")(http_request("POST", "x", route_params={"deviceId": device},
                                                              body=body)))
    assert response.status_code == 202, response.get_body()
    broadcast = run(user_function("send_broadcast")(http_request("POST", "broadcasts", body=body)))
    assert broadcast.status_code == 202, broadcast.get_body()
    fleet_body = nested(64).replace(b"nobody", device.encode())
    job_response = run(user_function("send_fleet_command")(http_request("POST", "commands", body=fleet_body)))
    assert job_response.status_code == 202, job_response.get_body()


def test_an_answer_nested_too_deep_to_store_is_dead_lettered_and_the_rest_of_its_batch_applied(
        run: Any, app_env: Any, mosquitto: Mosquitto) -> None:
    from standins.eventhub_factory import Partition, routed_body
    from standins.invoke import InvocationContext

    device = online(run, mosquitto, "silent")
    try:
        deep, fine = (json_of(send(run, device.device_id, {"name": n}))["commandId"] for n in ("deep", "fine"))
        too_deep = (b'{"commandId":"%s","status":"succeeded","result":' % deep.encode()) + b"[" * 300 + b"]" * 300 \
            + b"}"
        hub = Partition(f"deep-{uuid.uuid4().hex[:6]}", "0")
        hub.publish([routed_body(too_deep, topic=f"devices/{device.device_id}/commands/{deep}/response", at=T0,
                                 payload_format="binary"),
                     routed_body({"commandId": fine, "status": "succeeded"},
                                 topic=f"devices/{device.device_id}/commands/{fine}/response", at=T0)])
        run(user_function("command_responses")(hub.deliver(), InvocationContext("command_responses")))
        assert command(run, device.device_id, fine)["status"] == "succeeded"
        assert command(run, device.device_id, deep)["status"] == "sent"
        [reason] = dead_letter_reasons(run, hub.hub)
        assert "more than 64 levels deep" in reason, reason
    finally:
        device.disconnect()


@pytest.mark.parametrize("device_ids, index, detail", [
    (["ok", ""], 1, "non-empty"),
    (["x" * 129], 0, "longer than 128"),
    (["ok", "x" * 510], 1, "longer than 128"),
    (["a/b"], 0, "cannot be commanded"),
    (["ok", "ok", "a+b"], 2, "cannot be commanded"),
])
def test_a_fleet_jobs_device_ids_are_checked_as_everywhere_else(run: Any, app_env: Any, device_ids: list[str],
                                                                 index: int, detail: str) -> None:
    response = fleet(run, {"name": "x", "target": {"deviceIds": device_ids}})
    assert response.status_code == 400, response.get_body()
    problem = json_of(response)
    assert problem["errors"][0]["loc"] == ["body", "target", "deviceIds", index] and detail in problem["detail"]
    assert repr(device_ids[index][:64]).strip("'") in problem["detail"], "the id is named"


def _fleet_ids() -> Any:
    from hypothesis import strategies as st

    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=130)
    return st.lists(st.one_of(text, st.sampled_from(["", "nobody", "x" * 128, "x" * 129, "~7E", "m|", "a'b", "a/b"])),
                    min_size=1, max_size=8)


def test_a_fleet_jobs_counts_always_add_up_to_its_total(run: Any, app_env: Any) -> None:
    """Any list of ids: a 400 when one of them cannot be commanded, else a job whose
    counts add up to its total (an empty id made a member row the counts never read)."""
    import re

    from hypothesis import HealthCheck, given, settings

    known = registered(run)

    @given(_fleet_ids())
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def check(device_ids: list[str]) -> None:
        response = fleet(run, {"name": "x", "target": {"deviceIds": [*device_ids, known]}})
        if any(not 1 <= len(d) <= 128 or re.search(r"[/+#\x00-\x1f\x7f-\x9f]", d) for d in device_ids):
            assert response.status_code == 400, response.get_body()
            return
        assert response.status_code == 202, response.get_body()
        created = json_of(response)
        assert created["total"] == len(set(device_ids) | {known})
        assert sum(job(run, created["jobId"])["counts"].values()) == created["total"]

    check()


def test_a_fleet_job_is_done_only_once_every_chunk_is_whatever_order_they_run_in(run: Any, app_env: Any) -> None:
    from standins.invoke import drain_queue

    ghosts = [f"ghost-{uuid.uuid4().hex[:6]}-{n:03d}" for n in range(450)]
    created = json_of(fleet(run, {"name": "x", "target": {"deviceIds": ghosts}}))
    assert (created["counts"], created["fanout"]) == ({"failed": 200, "queued": 250}, "running")
    assert run(drain_queue("fleet-fanout", "fleet_fanout", max_messages=1, last_first=True)) == 1  # the last chunk
    after_last = job(run, created["jobId"])
    assert (after_last["counts"], after_last["fanout"]) == ({"failed": 250, "queued": 200}, "running")
    run(drain_queue("fleet-fanout", "fleet_fanout"))
    done = job(run, created["jobId"])
    assert (done["counts"], done["fanout"]) == ({"failed": 450}, "done")


def queued(run: Any, mosquitto: Mosquitto, count: int) -> tuple[Device, list[dict[str, Any]]]:
    """A registered device that has not connected yet, ``count`` commands waiting for it."""
    device = Device(registered(run), mosquitto.url, behaviour="silent")
    return device, [json_of(send(run, device.device_id, {"name": f"c{n:03d}"})) for n in range(count)]


def received_ids(device: Device, count: int) -> list[str]:
    """The command ids the device received, once ``count`` came and nothing more for 0.5 s."""
    device.wait_for(count)
    time.sleep(0.5)
    return [r.payload["commandId"] for r in device.commands]


def test_a_cancel_while_the_queue_drains_keeps_its_command_from_the_device(run: Any, mosquitto: Mosquitto,
                                                                           app_env: Any) -> None:
    import asyncio

    device, commands = queued(run, mosquitto, 120)
    device.connect()
    try:
        async def connect_and_cancel() -> None:
            drain = asyncio.ensure_future(
                user_function("client_lifecycle")(ev.connected(device.device_id, 1, datetime.now(UTC))))
            while len(device.commands) < 5:  # the drain has read the queue  # noqa: ASYNC110 - a paho thread fills it
                await asyncio.sleep(0.005)
            await asyncio.gather(*(user_function("cancel_command")(http_request(
                "POST", "x", route_params={"deviceId": device.device_id, "commandId": c["commandId"]}))
                for c in commands[40:]))
            await drain

        run(connect_and_cancel())
        final = {c["commandId"]: command(run, device.device_id, c["commandId"]) for c in commands}
        unsent = {cid for cid, c in final.items() if c["status"] == "cancelled" and "sentAt" not in c}
        got = received_ids(device, len(commands) - len(unsent))
        assert unsent, "some cancels came before the drain reached their command"
        assert not unsent & set(got), "a command cancelled while pending never reaches the device"
        assert got == [c["commandId"] for c in commands if c["commandId"] not in unsent], "each once, in order"
        assert all("sentAt" in final[cid] for cid in got)
    finally:
        device.disconnect()


def test_one_connect_event_delivered_twice_at_once_publishes_each_command_once_in_order(
        run: Any, mosquitto: Mosquitto, app_env: Any) -> None:
    import asyncio

    device, commands = queued(run, mosquitto, 100)
    device.connect()
    try:
        event = ev.connected(device.device_id, 1, datetime.now(UTC))

        async def twice() -> None:
            await asyncio.gather(*(user_function("client_lifecycle")(event) for _ in range(2)))

        run(twice())
        assert received_ids(device, 100) == [c["commandId"] for c in commands]
        assert {command(run, device.device_id, c["commandId"])["status"] for c in commands} == {"sent"}
    finally:
        device.disconnect()


def test_commands_sent_while_the_queue_drains_arrive_after_the_queued_ones(run: Any, mosquitto: Mosquitto,
                                                                           app_env: Any) -> None:
    import asyncio

    device, commands = queued(run, mosquitto, 150)
    device.connect()
    try:
        async def connect_and_send() -> list[dict[str, Any]]:
            drain = asyncio.ensure_future(
                user_function("client_lifecycle")(ev.connected(device.device_id, 1, datetime.now(UTC))))
            later: list[dict[str, Any]] = []
            while not drain.done() or len(later) < 3:
                response = await user_function("send_command")(http_request(
                    "POST", "x", route_params={"deviceId": device.device_id}, body={"name": f"later{len(later)}"}))
                later.append(json_of(response))
            await drain
            return later

        later = run(connect_and_send())
        assert any(c["status"] == "pending" for c in later), "some came while the queue drained"
        everything = [c["commandId"] for c in commands + later]
        assert received_ids(device, len(everything)) == everything, "in the order they were sent"
    finally:
        device.disconnect()


def test_a_drain_the_broker_cuts_short_fails_the_event_so_that_event_grid_delivers_it_again(
        run: Any, mosquitto: Mosquitto, app_env: Any) -> None:
    """The mark must not stay on a connected device with nobody draining: commands sent
    to it join its queue, so they would wait for its next connect."""
    from shared.commands.transports import reset_transport
    from standins.invoke import FunctionFailed
    from standins.services import free_port

    device, commands = queued(run, mosquitto, 5)
    device.connect()
    event = ev.connected(device.device_id, 1, datetime.now(UTC))
    try:
        with changed_settings(run, {"MQTT_BROKER_URL": f"mqtt://127.0.0.1:{free_port()}"}):
            run(reset_transport())
            with pytest.raises(FunctionFailed, match="could not be published"):
                deliver(run, event)
            run(reset_transport())
        assert command(run, device.device_id, commands[0]["commandId"])["status"] == "failed"
        later = json_of(send(run, device.device_id, {"name": "later"}))
        assert later["status"] == "pending", "behind the queue"
        deliver(run, event)  # Event Grid's redelivery
        assert received_ids(device, 5) == [c["commandId"] for c in commands[1:]] + [later["commandId"]]
    finally:
        device.disconnect()


def test_a_delete_ends_the_queue_so_a_client_created_again_under_the_name_gets_none_of_it(
        run: Any, mosquitto: Mosquitto, app_env: Any) -> None:
    device = Device(registered(run), mosquitto.url, behaviour="silent")
    reset = json_of(send(run, device.device_id, {"name": "factory-reset"}))
    deleted_at = datetime.now(UTC)
    deliver(run, ev.deleted(device.device_id, deleted_at))
    ended = command(run, device.device_id, reset["commandId"])
    assert (ended["status"], ended["error"], "completedAt" in ended) == ("cancelled", {"reason": "device deleted"},
                                                                         True)
    time.sleep(0.01)
    again = datetime.now(UTC)  # the client created again, then a command for it
    deliver(run, ev.created_or_updated(device.device_id, again, created_on=again))
    fresh = json_of(send(run, device.device_id, {"name": "hello"}))
    device.connect()
    try:
        deliver(run, ev.connected(device.device_id, 1, datetime.now(UTC)))
        assert received_ids(device, 1) == [fresh["commandId"]], "the new client gets its own command only"
        assert command(run, device.device_id, reset["commandId"])["status"] == "cancelled"
    finally:
        device.disconnect()


def test_a_queue_of_an_earlier_incarnation_is_ended_whatever_order_the_events_come_in(
        run: Any, mosquitto: Mosquitto, app_env: Any) -> None:
    """Event Grid keeps no order: the new client's creation and its connect may come
    before the old one's delete."""
    device = Device(registered(run), mosquitto.url, behaviour="silent")
    reset = json_of(send(run, device.device_id, {"name": "factory-reset"}))
    deleted_at = datetime.now(UTC)
    time.sleep(0.01)
    again = datetime.now(UTC)
    deliver(run, ev.created_or_updated(device.device_id, again, created_on=again))
    fresh = json_of(send(run, device.device_id, {"name": "hello"}))
    device.connect()
    try:
        deliver(run, ev.connected(device.device_id, 1, datetime.now(UTC)))
        assert received_ids(device, 1) == [fresh["commandId"]]
        ended = command(run, device.device_id, reset["commandId"])
        assert (ended["status"], ended["error"]) == ("cancelled", {"reason": "device deleted"})
        deliver(run, ev.deleted(device.device_id, deleted_at))  # the delete, last
        assert command(run, device.device_id, fresh["commandId"])["status"] == "sent"
    finally:
        device.disconnect()


def test_what_sending_and_draining_cost_in_storage_requests(
        run: Any, mosquitto: Mosquitto, app_env: Any) -> None:
    """The hot path, 3: the device's row read while the due index row is written, then
    the command stored as sent (then published). A queued command reads the row again
    once stored and marks it (5; 4 when marked already). A drain: the row, the queue,
    one conditional write per command (which claims it), the mark cleared."""
    from tests.support.harness import storage_requests

    def entities(seen: list[tuple[str, str]]) -> list[tuple[str, str]]:  # not the tables' creation
        return sorted((method, path.split("(")[0].rsplit("/", 1)[-1]) for method, path in seen
                      if not path.endswith("/Tables"))

    device = online(run, mosquitto, "silent")
    try:
        with storage_requests(run) as hot:
            assert json_of(send(run, device.device_id, {"name": "x"}))["status"] == "sent"
        assert entities(hot.seen) == [("GET", "devices"), ("PATCH", "commands"), ("POST", "commands")]
    finally:
        device.disconnect()
    asleep = registered(run)
    with storage_requests(run) as first:
        assert json_of(send(run, asleep, {"name": "x"}))["status"] == "pending"
    assert entities(first.seen) == [("GET", "devices"), ("GET", "devices"), ("PATCH", "commands"),
                                    ("PATCH", "devices"), ("POST", "commands")]
    with storage_requests(run) as second:
        assert json_of(send(run, asleep, {"name": "y"}))["status"] == "pending"
    assert entities(second.seen) == [("GET", "devices"), ("GET", "devices"), ("PATCH", "commands"),
                                     ("POST", "commands")], "marked already: nothing to write"
    with storage_requests(run) as drain:  # one write per queued command claims it
        deliver(run, ev.connected(asleep, 1, datetime.now(UTC)))
    assert entities(drain.seen) == [("GET", "commands"), ("GET", "devices"), ("GET", "devices"),
                                    ("PATCH", "devices"), ("PATCH", "devices"), ("PUT", "commands"),
                                    ("PUT", "commands"), ("PUT", "devices")]


@pytest.mark.parametrize("trust, headers, who", [
    ("false", {"x-ms-client-principal-name": "ops@example.com"}, "function-key"),  # as the host hands them
    ("true", {"x-ms-client-principal-name": "ops@example.com"}, "ops@example.com"),
    ("true", {"x-ms-client-principal": "bm90IGpzb24="}, "function-key"),  # malformed: never "None"
    ("true", {"x-ms-client-principal": "eyJjbGFpbXMiOlt7InR5cCI6Im5hbWUiLCJ2YWwiOm51bGx9XX0="}, "function-key"),
    ("true", {}, "function-key"),
], ids=["a-caller-header-without-platform-auth", "platform-auth", "malformed-principal", "a-null-name-claim",
        "no-principal"])
def test_issued_by_is_the_platforms_word_only(run: Any, trust: str, headers: dict[str, str], who: str) -> None:
    """CONTRACT: a header a caller sent is never an identity; the principal counts only
    where App Service authentication guards the API (TRUST_APP_SERVICE_AUTH)."""
    from shared.commands.service import issued_by
    from tests.support.harness import changed_settings

    with changed_settings(run, {"TRUST_APP_SERVICE_AUTH": trust}):
        assert issued_by(headers) == who


# The documented bound: a payload of at most 256 KiB as JSON (CONTRACT), at the limit
# and one byte past it, on each route that takes one. A string of n characters is n + 2
# bytes as JSON (its quotes).
AT_THE_LIMIT, ONE_PAST = "p" * (256 * 1024 - 2), "p" * (256 * 1024 - 1)


@pytest.mark.parametrize("route", ["send_command", "send_fleet_command", "send_broadcast"])
@pytest.mark.usefixtures("app_env")
def test_a_payload_of_256_kib_is_kept_whole_and_one_byte_more_is_a_413(run: Any, route: str) -> None:
    device = registered(run)  # offline: the command waits, the payload stored whole

    def post(payload: str) -> Any:
        if route == "send_command":
            return send(run, device, {"name": "x", "payload": payload})
        if route == "send_fleet_command":
            return fleet(run, {"name": "x", "payload": payload, "target": {"deviceIds": [device]}})
        return run(user_function("send_broadcast")(http_request("POST", "broadcasts",
                                                                body={"name": "x", "payload": payload})))

    kept = post(AT_THE_LIMIT)
    assert kept.status_code == 202, kept.get_body()[:300]
    if route == "send_command":
        assert command(run, device, json_of(kept)["commandId"])["payload"] == AT_THE_LIMIT
    refused = post(ONE_PAST)
    assert refused.status_code == 413 and refused.mimetype == "application/problem+json"
    assert json_of(refused)["detail"] == "payload is 262145 bytes as JSON, more than 262144"


@pytest.mark.usefixtures("app_env")
def test_a_whole_number_written_with_a_fraction_is_an_integer_as_json_schema_counts_it(run: Any) -> None:
    device = registered(run)
    response = send(run, device, {"name": "x", "timeoutSeconds": 2596.0})
    assert response.status_code == 202, response.get_body()
    assert json_of(response)["expiresAt"] > json_of(response)["createdAt"]
    for not_whole in (2596.5, True, "2596"):
        refused = send(run, device, {"name": "x", "timeoutSeconds": not_whole})
        assert refused.status_code == 400, not_whole


@pytest.mark.usefixtures("app_env")
@pytest.mark.parametrize("target", [{}, {"deviceIds": None, "attributes": {"group": "a"}},
                                    {"deviceIds": ["d"], "attributes": {"group": "a"}}, {"deviceIds": None}])
def test_a_fleet_target_names_exactly_one_of_device_ids_and_attributes_in_the_schema_too(
        run: Any, target: dict[str, Any]) -> None:
    import jsonschema

    from shared.meta.openapi import openapi_document

    response = fleet(run, {"name": "x", "target": target})
    assert response.status_code == 400 and "exactly one of deviceIds and attributes" in response.get_body().decode()
    document = openapi_document()
    schema = {**document["components"]["schemas"]["FleetTargetInput"], "components": document["components"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(target, schema)
