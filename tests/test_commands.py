"""Cloud-to-edge commands end to end: the HTTP API as the worker calls it, Azurite,
Mosquitto, real MQTT v5 device clients that answer, and their answers routed back
to command_responses as Event Grid would; over both transports."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from tests.harness import changed_settings, deliver, http_request, json_of, user_function
from tools import event_factory as ev
from tools.edge import Device, ResponseRouter
from tools.services import Mosquitto

T0 = datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture(params=["mqtt", "eventgrid"])
def transport(request: Any, app_env: Any, mosquitto: Mosquitto, run: Any) -> Iterator[str]:
    """The app publishing through the MQTT transport, or through HTTP Publish to a
    stand-in of the Event Grid broker that checks each request and forwards it."""
    from shared.commands.transport import reset_transport

    if request.param == "mqtt":
        run(reset_transport())
        yield "mqtt"
        run(reset_transport())
        return
    from tools.httppublish import run_http_publish

    with run_http_publish(mosquitto.url) as stand_in, changed_settings(run, {
            "COMMAND_TRANSPORT": "eventgrid", "EVENTGRID_MQTT_HOSTNAME": stand_in.hostname}):
        run(reset_transport())
        stand_in.install(run)
        yield "eventgrid"
        run(reset_transport())


@pytest.fixture
def router(mosquitto: Mosquitto) -> Iterator[ResponseRouter]:
    routing = ResponseRouter(mosquitto.url)
    yield routing
    routing.close()


def online(run: Any, mosquitto: Mosquitto, behaviour: str = "succeed", **kwargs: Any) -> Device:
    """A device in the registry, connected to the broker and subscribed."""
    device = Device(f"dev-{uuid.uuid4().hex[:8]}", mosquitto.url, behaviour=behaviour, **kwargs)  # type: ignore[arg-type]
    deliver(run, ev.created_or_updated(device.device_id, T0, attributes=kwargs.get("attributes") or {}))
    device.connect()
    deliver(run, ev.connected(device.device_id, 1, T0 + timedelta(minutes=1)))
    return device


def send(run: Any, device_id: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return run(user_function("send_command")(http_request(
        "POST", f"devices/{device_id}/commands", route_params={"deviceId": device_id}, body=body,
        headers=headers or {})))


def command(run: Any, device_id: str, command_id: str) -> dict[str, Any]:
    response = run(user_function("get_command")(http_request(
        "GET", f"devices/{device_id}/commands/{command_id}",
        route_params={"deviceId": device_id, "commandId": command_id})))
    assert response.status_code == 200, response.get_body()
    return json_of(response)  # type: ignore[no-any-return]


@pytest.mark.parametrize("behaviour, status", [("succeed", "succeeded"), ("fail", "failed"), ("reject", "rejected")])
def test_a_command_is_published_answered_and_tracked(run: Any, mosquitto: Mosquitto, transport: str,
                                                      router: ResponseRouter, behaviour: str, status: str) -> None:
    device = online(run, mosquitto, behaviour)
    try:
        response = send(run, device.device_id, {"name": "reboot", "payload": {"delaySeconds": 5}, "timeoutSeconds": 60},
                        headers={"X-MS-CLIENT-PRINCIPAL-NAME": "ops@example.com"})
        assert response.status_code == 202, response.get_body()
        sent = json_of(response)
        assert (sent["status"], sent["issuedBy"], sent["name"]) == ("sent", "ops@example.com", "reboot")
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
