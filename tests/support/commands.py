"""Building blocks of the command tests: the transport the app publishes through and
the router of the devices' answers (fixtures: a test module imports them), a device
registered or brought online, a command or a fleet job sent through the HTTP API and
read back, and the reasons of the commands dead-lettered."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from standins import event_factory as ev
from standins.edge import Device, ResponseRouter
from standins.services import Mosquitto
from tests.support.harness import changed_settings, deliver, http_request, json_of, user_function

T0 = datetime.now(UTC) - timedelta(hours=1)


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


def online(run: Any, mosquitto: Mosquitto, behaviour: str = "succeed", **kwargs: Any) -> Device:
    """A device in the registry, connected to the broker and subscribed."""
    device = Device(f"dev-{uuid.uuid4().hex[:8]}", mosquitto.url, behaviour=behaviour, **kwargs)  # type: ignore[arg-type]
    deliver(run, ev.created_or_updated(device.device_id, T0, attributes=kwargs.get("attributes") or {}))
    device.connect()
    deliver(run, ev.connected(device.device_id, 1, T0 + timedelta(minutes=1)))
    return device


def registered(run: Any, *, state: str = "Enabled", attributes: dict[str, Any] | None = None) -> str:
    """A device in the registry that has never connected."""
    device_id = f"off-{uuid.uuid4().hex[:8]}"
    deliver(run, ev.created_or_updated(device_id, T0, state=state, attributes=attributes or {}))
    return device_id


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


def fleet(run: Any, body: dict[str, Any]) -> Any:
    return run(user_function("send_fleet_command")(http_request("POST", "commands", body=body)))


def job(run: Any, job_id: str) -> dict[str, Any]:
    response = run(user_function("get_fleet_command")(http_request("GET", "x", route_params={"jobId": job_id})))
    assert response.status_code == 200, response.get_body()
    return json_of(response)  # type: ignore[no-any-return]


def dead_letter_reasons(run: Any, hub: str) -> list[str]:
    import orjson

    from shared.platform.storage import data_store
    from shared.platform.storage_names import DEADLETTER_CONTAINER

    async def read() -> list[str]:
        container = await data_store().container(DEADLETTER_CONTAINER)
        reasons = []
        async for blob in container.list_blobs(name_starts_with="command-responses/"):
            letter = orjson.loads(await (await container.download_blob(blob.name)).readall())
            if letter["eventHub"]["hub"] == hub:
                reasons.append(letter["reason"])
        return reasons

    return run(read())  # type: ignore[no-any-return]
