"""``make demo``: a day in the life of a small fleet, replayed through the app.

Starts Azurite in memory on free ports, delivers a scripted day of Event Grid MQTT
client life cycle events to ``client_lifecycle`` (shuffled, with duplicates, and one
malformed event), then prints the registry and the alerts as the HTTP API returns
them. Runs on embedded defaults; no setting or cloud resource is needed.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from tools import event_factory as ev
from tools.invoke import http_request, json_of, run_against_azurite, user_function

FLAP_WINDOW_SECONDS = 600


def scripted_day(start: datetime) -> list[dict[str, Any]]:
    """Six devices' day, in the order things happened."""

    def at(hours: float) -> datetime:
        return start + timedelta(hours=hours)

    fleet = {"camera-017": {"site": "plant-3", "type": "camera"}, "camera-018": {"site": "plant-3", "type": "camera"},
             "plc-line2-04": {"site": "plant-3", "type": "plc"}, "gateway-west": {"site": "plant-1", "type": "gateway"},
             "sensor-ü-7": {"site": "plant-1", "type": "sensor"}, "camera-099": {"site": "plant-1", "type": "camera"}}
    events = [ev.created_or_updated(d, at(0), created_on=at(0) - timedelta(days=30), attributes=a)
              for d, a in fleet.items()]
    # Steady devices: connect in the morning, close cleanly at night.
    for device, seq in (("camera-017", 41), ("plc-line2-04", 7), ("sensor-ü-7", 3)):
        events += [ev.connected(device, seq, at(6)), ev.disconnected(device, seq, at(12), reason="ConnectionLost"),
                   ev.connected(device, seq + 1, at(12.1))]
    events.append(ev.disconnected("sensor-ü-7", 4, at(22), reason="ClientInitiatedDisconnect"))
    # camera-018's certificate expires at noon: the broker turns it away.
    events += [ev.connected("camera-018", 12, at(6)),
               ev.disconnected("camera-018", 12, at(12), reason="ClientAuthenticationError")]
    # gateway-west sits on a bad Wi-Fi link in the afternoon: it flaps.
    for n in range(6):
        moment = at(15) + timedelta(seconds=90 * n)
        events += [ev.connected("gateway-west", 100 + n, moment),
                   ev.disconnected("gateway-west", 100 + n, moment + timedelta(seconds=40), reason="ConnectionLost")]
    events.append(ev.connected("gateway-west", 106, at(16)))
    # An operator disables plc-line2-04 in the evening, then camera-099 is retired.
    events += [ev.created_or_updated("plc-line2-04", at(18), created_on=at(0) - timedelta(days=30),
                                     state="Disabled", attributes=fleet["plc-line2-04"]),
               ev.disconnected("plc-line2-04", 8, at(18), reason="ClientAuthenticationError")]
    events += [ev.connected("camera-099", 5, at(7)), ev.deleted("camera-099", at(19)),
               ev.disconnected("camera-099", 5, at(19), reason="ClientAuthenticationError")]
    return events


def deliveries(events: list[dict[str, Any]], rng: random.Random) -> tuple[list[dict[str, Any]], int, int]:
    """Event Grid's view of the day: neighbours swapped, some events twice."""
    delivered = list(events)
    swaps = 0
    for i in range(len(delivered) - 1):
        if rng.random() < 0.3:
            delivered[i], delivered[i + 1] = delivered[i + 1], delivered[i]
            swaps += 1
    duplicates = rng.sample(events, k=len(events) // 5)
    for duplicate in duplicates:
        delivered.insert(rng.randrange(len(delivered) + 1), duplicate)
    return delivered, swaps, len(duplicates)


def _row(device: dict[str, Any]) -> str:
    presence = "connected" if device["connected"] else "offline"
    if device["deleted"]:
        presence = "deleted"
    reason = device.get("disconnectionReason", "")
    return (f"  {device['deviceId']:<14} {device['state']:<9} {presence:<10} "
            f"seq {device.get('sequenceNumber', '-')!s:<4} {reason}")


async def replay(start: datetime) -> None:
    rng = random.Random(17)
    events = scripted_day(start)
    delivered, swaps, duplicates = deliveries(events, rng)
    malformed = {"id": "broken-1", "subject": "clients/?", "eventType": ev.PREFIX + "MQTTClientSessionConnected",
                 "eventTime": start.isoformat(), "dataVersion": "1", "data": {"sequenceNumber": "n/a"}}
    delivered.append(malformed)
    print(f"Delivering {len(delivered)} life cycle events: {len(events)} distinct, {duplicates} duplicates, "
          f"{swaps} out of order, 1 malformed.")
    handler = user_function("client_lifecycle")
    for document in delivered:
        await handler(ev.to_function_event(document))

    devices = json_of(await user_function("list_devices")(http_request("GET", "devices")))["items"]
    print(f"\nRegistry ({len(devices)} devices), GET /api/devices:")
    print(f"  {'device':<14} {'state':<9} {'presence':<10} {'seq':<8} last disconnection")
    for device in devices:
        print(_row(device))
    since = (start - timedelta(days=1)).isoformat()
    alerts = json_of(await user_function("list_alerts")(http_request("GET", "alerts", params={"since": since})))
    print(f"\nAlerts, newest first, GET /api/alerts ({len(alerts['items'])}):")
    for alert in alerts["items"]:
        print(f"  {alert['timestamp'][:19]}  {alert['severity']:<8} {alert['rule']:<19} {alert['message']}")
    from shared.platform.storage import data_store
    from shared.platform.storage_names import DEADLETTER_CONTAINER

    container = await data_store().container(DEADLETTER_CONTAINER)
    print("\nDead letters (container 'deadletter'):")
    async for blob in container.list_blobs(name_starts_with="lifecycle/"):
        letter = json.loads(await (await container.download_blob(blob.name)).readall())
        print(f"  {blob.name}\n    reason: {letter['reason']}; errors: "
              + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in letter["errors"]))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="  [app log] %(message)s")
    start = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    print("Starting Azurite (in memory) on free ports.")
    run_against_azurite(lambda: replay(start), {"FLAPPING_DISCONNECTS": "4",
                                                "FLAPPING_WINDOW_SECONDS": str(FLAP_WINDOW_SECONDS)})


if __name__ == "__main__":
    main()
