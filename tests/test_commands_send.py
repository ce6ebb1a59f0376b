"""Sending a command end to end: the HTTP API as the worker calls it, Azurite,
Mosquitto, real MQTT v5 device clients that answer, and their answers routed back
to command_responses as Event Grid would; over both transports. A command tracked
to its end (answered, expired, cancelled, raced), refusals, idempotency, and the
documented bounds of ids, keys, bodies and payloads."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from standins import event_factory as ev
from standins.edge import ResponseRouter
from standins.services import Mosquitto
from tests.support import commands
from tests.support.commands import T0, command, dead_letter_reasons, fleet, online, registered, send
from tests.support.harness import changed_settings, deliver, http_request, json_of, user_function

# The fixtures the command tests share (tests/support/commands.py), by name.
transport, router = commands.transport, commands.router


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


def test_a_due_command_the_timer_cannot_expire_holds_back_no_other(run: Any, app_env: Any) -> None:
    from standins.invoke import FunctionFailed
    from tests.support.harness import failing_requests

    devices = [registered(run) for _ in range(3)]
    sent = [json_of(send(run, d, {"name": "ping", "timeoutSeconds": 1})) for d in devices]
    time.sleep(1.1)
    stuck = sent[0]["commandId"]
    with failing_requests(run, "GET", stuck, times=1) as failed, pytest.raises(FunctionFailed, match="injected"):
        run(user_function("command_expiry")(None))
    assert failed, "the stuck command's read was the one that failed"
    statuses = [command(run, d, c["commandId"])["status"] for d, c in zip(devices, sent, strict=True)]
    assert statuses[0] != "expired" and statuses[1:] == ["expired", "expired"], (
        "the invocation failed (the host sees it), and the others were expired all the same")
    run(user_function("command_expiry")(None))  # the next minute
    assert command(run, devices[0], stuck)["status"] == "expired", "its due row was kept for the next run"


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
