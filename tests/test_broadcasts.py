"""Broadcasts: one message to every device or to a group, received by the addressed
devices only, with its time to live, and listed; over both transports."""

from __future__ import annotations

import time
import uuid
from typing import Any

from standins.edge import Device
from standins.services import Mosquitto
from tests.support import commands
from tests.support.harness import http_request, json_of, user_function

# The fixtures the command tests share (tests/support/commands.py), by name.
transport = commands.transport


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
