"""Building blocks of the command tests: a device brought online, a command sent to it
through the HTTP API, and the reasons of the commands dead-lettered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from standins import event_factory as ev
from standins.edge import Device
from standins.services import Mosquitto
from tests.support.harness import deliver, http_request, json_of, user_function

T0 = datetime.now(UTC) - timedelta(hours=1)


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
