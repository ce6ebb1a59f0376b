"""``make demo``, last part: cloud-to-edge commands to the demo fleet, the next morning.

Starts Mosquitto (MQTT v5) on a free port and points the app at it
(``COMMAND_TRANSPORT=mqtt``). The fleet's commandable devices are real MQTT v5
clients (:class:`tools.edge.Device`, persistent sessions), each answering by its
behaviour; their answers reach ``command_responses`` as Event Grid routing would
deliver them (:class:`tools.edge.ResponseRouter`). Commands, a fleet job and
broadcasts go through the HTTP functions as the worker calls them. Then every
command must be in the status its device's behaviour implies, and have reached its
device exactly once; anything else is a failure of the demo.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import azure.functions as func
import orjson

from tools import event_factory as ev
from tools.edge import Behaviour, Device, ResponseRouter
from tools.invoke import http_request, json_of, user_function
from tools.services import run_mosquitto

# The devices that can be commanded (enabled, not deleted) and how each answers.
BEHAVIOURS: dict[str, Behaviour] = {"camera-017": "succeed", "gateway-west": "reject", "sensor-ü-7": "silent",
                                    "camera-018": "fail"}
IMPLIED = {"succeed": "succeeded", "fail": "failed", "reject": "rejected", "silent": "expired"}
OPERATOR = {"X-MS-CLIENT-PRINCIPAL-NAME": "ana@contoso.com"}  # as App Service authentication reports her
SILENT_TIMEOUT_SECONDS = 1
SENSOR = "sensor-ü-7"  # asleep overnight; wakes up for the commands
QUEUED = ("rotate-logs", "set-exposure", "restart-stream")  # for camera-018 while it is offline
WAIT_SECONDS = 10
GROUP_BROADCAST: dict[str, Any] = {"name": "maintenance-window", "ttlSeconds": 3600, "group": "inspection",
                                   "payload": {"from": "02:00Z", "until": "03:00Z"}}
FLEET_BROADCAST: dict[str, Any] = {"name": "shift-change", "payload": {"shift": "B"}, "ttlSeconds": 600}


async def _http(function: str, method: str, path: str, **kwargs: Any) -> func.HttpResponse:
    return await user_function(function)(http_request(method, path, **kwargs))  # type: ignore[no-any-return]


async def _send(device_id: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> func.HttpResponse:
    return await _http("send_command", "POST", f"devices/{quote(device_id)}/commands",
                       route_params={"deviceId": device_id}, body=body, headers=OPERATOR | (headers or {}))


async def _command(command: dict[str, Any]) -> dict[str, Any]:
    device_id, command_id = command["deviceId"], command["commandId"]
    found: dict[str, Any] = json_of(await _http("get_command", "GET", f"devices/{quote(device_id)}/commands/"
                                                f"{command_id}", route_params={"deviceId": device_id,
                                                                               "commandId": command_id}))
    return found


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _outcome(command: dict[str, Any]) -> str:
    for field in ("result", "error"):
        if field in command:
            return f"{field} {_json(command[field])}"
    return "no answer before expiresAt" if command["status"] == "expired" else ""


def _line(command: dict[str, Any], before: str = "") -> str:
    line = f"  {command['deviceId']:<13} {command['name']:<15} {before}{command['status']:<9} {_outcome(command)}"
    return line.rstrip()


async def _lifecycle(*documents: dict[str, Any]) -> None:
    handler = user_function("client_lifecycle")
    for document in documents:
        await handler(ev.to_function_event(document))


async def _come_online(device: Device, sequence: int) -> None:
    """As a device does: its MQTT client connects and subscribes; then the broker
    reports the session, and its life cycle event reaches the app."""
    await asyncio.to_thread(device.connect)
    await _lifecycle(ev.connected(device.device_id, sequence, datetime.now(UTC)))


def unexpected(commands: list[dict[str, Any]], behaviours: dict[str, Behaviour],
               received: dict[str, list[str]]) -> list[str]:
    """What keeps ``commands`` from each being in the status its device's behaviour
    implies and having reached its device (``received``: command ids by device)
    exactly once; empty when nothing does."""
    problems = []
    for command in commands:
        device, status = command["deviceId"], command["status"]
        wanted = IMPLIED[behaviours[device]]
        if status != wanted:
            problems.append(f"{device} {command['name']} is {status}, not {wanted}")
        times = received.get(device, []).count(command["commandId"])
        if times != 1:
            problems.append(f"{device} {command['name']} reached the device {times} times, not once")
    return problems


async def commands() -> bool:
    """The commands part; False when a command is not where its device's behaviour puts it."""
    from shared.commands.transport import reset_transport
    from shared.platform.settings import reset_settings

    print("\nCloud-to-edge commands, the next morning. Starting Mosquitto (MQTT v5) on a free port; "
          "the app publishes to it (COMMAND_TRANSPORT=mqtt).")
    with run_mosquitto() as broker:
        os.environ.update({"MQTT_BROKER_URL": broker.url, "COMMAND_TRANSPORT": "mqtt"})
        reset_settings()
        router = ResponseRouter(broker.url)
        devices: dict[str, Device] = {}
        try:
            return await _fleet_at_work(broker.url, router, devices)
        finally:
            for device in devices.values():
                device.disconnect()
            router.close()
            await reset_transport()


async def _fleet_at_work(broker_url: str, router: ResponseRouter, devices: dict[str, Device]) -> bool:
    registry = {d["deviceId"]: d for d in json_of(await _http("list_devices", "GET", "devices"))["items"]}
    await _online(registry, broker_url, devices)
    made, problems = await _one_device_each(router)
    queued, in_order = await _offline_queue(registry, router, devices["camera-018"])
    retried, retry_problems = await _idempotent_retry(router)
    job = await _fleet_job(router)
    summary, broadcast_problems = await _broadcasts(devices)

    every = []
    for device_id in BEHAVIOURS:
        listed = await _http("list_commands", "GET", f"devices/{quote(device_id)}/commands",
                             route_params={"deviceId": device_id})
        every += json_of(listed)["items"]
    every.sort(key=lambda c: (c["createdAt"], c["commandId"]))
    print(f"\nEvery command, GET /api/devices/{{deviceId}}/commands ({len(every)}):")
    print(f"  {'device':<13} {'name':<15} {'status':<9} {'issuedBy':<16} result or error")
    for command in every:
        print(f"  {command['deviceId']:<13} {command['name']:<15} {command['status']:<9} "
              f"{command['issuedBy']:<16} {_outcome(command)}")
    wanted = len(made) + len(queued) + len(retried) + job["total"]
    problems += in_order + retry_problems + broadcast_problems
    problems += [] if len(every) == wanted else [f"{len(every)} commands listed, not the {wanted} made"]
    problems += unexpected(every, BEHAVIOURS, {d.device_id: [r.payload["commandId"] for r in d.commands]
                                               for d in devices.values()})
    if problems:
        print("\nFAILED: not every command is where its device's behaviour puts it: " + "; ".join(problems))
        return False
    print(f"\nEvery command is in the status its device's behaviour implies ({len(every)} commands: "
          f"{', '.join(f'{d} {b}' for d, b in BEHAVIOURS.items())}) and reached its device once; {summary}")
    return True


async def _online(registry: dict[str, dict[str, Any]], broker_url: str, devices: dict[str, Device]) -> None:
    """The connected devices' clients connect; the sleeping sensor wakes up."""
    print("\nThe fleet's commandable devices as MQTT v5 clients (persistent sessions, subscribed to "
          "devices/{id}/commands/+, broadcast/# and their group's groups/{group}/broadcast/#):")
    for device_id, behaviour in BEHAVIOURS.items():
        entry = registry[device_id]
        group = (entry.get("attributes") or {}).get("group")
        devices[device_id] = device = Device(device_id, broker_url, behaviour=behaviour, group=group)
        if entry["connected"]:
            await asyncio.to_thread(device.connect)
        print(f"  {device_id:<13} answers {behaviour:<8} group {group or '-':<11} "
              f"{'online' if entry['connected'] else 'offline'}")
    await _come_online(devices[SENSOR], registry[SENSOR]["sequenceNumber"] + 1)
    print(f"  {SENSOR} wakes up: its client connects and subscribes, then its life cycle connect event is "
          "delivered.")


async def _one_device_each(router: ResponseRouter) -> tuple[list[dict[str, Any]], list[str]]:
    """A command each to three online devices (the silent one's times out quickly),
    and two that the registry refuses."""
    print(f"\nCommands, POST /api/devices/{{deviceId}}/commands (by {OPERATOR['X-MS-CLIENT-PRINCIPAL-NAME']}), "
          "then the devices' answers routed to command_responses:")
    silent = json_of(await _send(SENSOR, {"name": "calibrate", "payload": {"reference": 21.0},
                                          "timeoutSeconds": SILENT_TIMEOUT_SECONDS}))
    print(f"{_line(silent, '202 ')}      timeoutSeconds {SILENT_TIMEOUT_SECONDS}")
    direct = [json_of(await _send("camera-017", {"name": "set-exposure", "payload": {"ev": 0.7}})),
              json_of(await _send("gateway-west", {"name": "reboot", "payload": {"delaySeconds": 5}}))]
    await router.deliver(expect=len(direct))
    for sent in direct:
        print(_line(await _command(sent), "202 sent -> "))
    problems = []
    for device_id in ("plc-line2-04", "camera-099"):  # disabled, deleted
        refused = await _send(device_id, {"name": "reboot"})
        print(f"  {device_id:<13} {'reboot':<15} {refused.status_code} {json_of(refused)['detail']}")
        if refused.status_code != 409:
            problems.append(f"a command to {device_id} was answered {refused.status_code}, not 409")
    due = datetime.fromisoformat(silent["expiresAt"]) - datetime.now(UTC)
    await asyncio.sleep(max(0.0, due.total_seconds()) + 0.1)
    await user_function("command_expiry")(None)
    print(f"  {SILENT_TIMEOUT_SECONDS} s later the timer command_expiry runs:")
    print(_line(await _command(silent), "-> "))
    return [silent, *direct], problems


async def _offline_queue(registry: dict[str, dict[str, Any]], router: ResponseRouter,
                         device: Device) -> tuple[list[dict[str, Any]], list[str]]:
    """Commands for an offline device wait, and go out in order when it connects."""
    camera = device.device_id
    print(f"\n{camera} is offline (its certificate expired yesterday); commands for it are queued:")
    queued = []
    for name in QUEUED:
        queued.append(json_of(await _send(camera, {"name": name})))
        print(_line(queued[-1], "202 "))
    await _come_online(device, registry[camera]["sequenceNumber"] + 1)
    order = [r.payload["name"] for r in await asyncio.to_thread(device.wait_for, len(QUEUED))]
    await router.deliver(expect=len(QUEUED))
    print("  With a renewed certificate its client connects and subscribes; its connect event is delivered; "
          f"client_lifecycle publishes the queue.\n  Received in this order: {', '.join(order)}")
    for sent in queued:
        print(_line(await _command(sent), "-> "))
    return queued, [] if order == list(QUEUED) else [f"{camera} received its queued commands as {order}"]


async def _idempotent_retry(router: ResponseRouter) -> tuple[list[dict[str, Any]], list[str]]:
    """The same Idempotency-Key twice: one command, answered 202 then 200."""
    key = {"Idempotency-Key": "snapshot-0001"}
    body = {"name": "snapshot", "payload": {"resolution": "1080p"}}
    first, again = await _send("camera-017", body, key), await _send("camera-017", body, key)
    await router.deliver(expect=1)
    ids = [json_of(first)["commandId"], json_of(again)["commandId"]]
    print(f"\nA retry with the same Idempotency-Key ({key['Idempotency-Key']}): {first.status_code} command "
          f"{ids[0]}, then {again.status_code} command {ids[1]}.")
    same = (first.status_code, again.status_code, ids[1]) == (202, 200, ids[0])
    return [json_of(first)], [] if same else ["the retry with the same Idempotency-Key made another command"]


async def _fleet_job(router: ResponseRouter) -> dict[str, Any]:
    """A fleet job by attribute, its counts before and after the answers."""
    body = {"name": "update-model", "payload": {"model": "yolo-v8", "version": "8.2"}, "timeoutSeconds": 600,
            "target": {"attributes": {"type": "camera"}}}
    created = json_of(await _http("send_fleet_command", "POST", "commands", body=body))
    await router.deliver(expect=created["total"])
    job: dict[str, Any] = json_of(await _http("get_fleet_command", "GET", f"commands/{created['jobId']}",
                                              route_params={"jobId": created["jobId"]}))
    print(f"\nA fleet job, POST /api/commands {body['name']} to {_json(body['target'])}: 202, "
          f"{created['total']} devices (not the deleted camera-099), counts {_json(created['counts'])};\n"
          f"  after the answers, GET /api/commands/{{jobId}}: counts {_json(job['counts'])}, "
          f"fan-out {job['fanout']}.")
    return job


async def _broadcasts_until(device: Device, names: set[str]) -> list[str]:
    """The names of the broadcasts ``device`` received, once ``names`` are among them
    (or ``WAIT_SECONDS`` passed)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        got = [b.payload["name"] for b in list(device.broadcasts)]
        if names <= set(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.02)


async def _broadcasts(devices: dict[str, Device]) -> tuple[str, list[str]]:
    """A broadcast to a group, then one to the whole fleet; who got what."""
    print("\nBroadcasts, POST /api/broadcasts: one to a group, then one to the whole fleet:")
    for body in (GROUP_BROADCAST, FLEET_BROADCAST):
        response = await _http("send_broadcast", "POST", "broadcasts", body=body)
        sent = json_of(response)
        print(f"  {body['name']:<18} {response.status_code} topic {sent['topic']}, ttl {body['ttlSeconds']} s")
    members = {d.device_id for d in devices.values() if d.group == GROUP_BROADCAST["group"]}
    print("  Received by (the broker keeps the order: where the group's came at all, it came first):")
    problems = []
    for device in devices.values():
        wanted = [GROUP_BROADCAST["name"], FLEET_BROADCAST["name"]] if device.device_id in members else [
            FLEET_BROADCAST["name"]]
        got = await _broadcasts_until(device, set(wanted))
        print(f"    {device.device_id:<13} group {device.group or '-':<11} {', '.join(got)}")
        if got != wanted:
            problems.append(f"{device.device_id} received broadcasts {got}, not {wanted}")
    listed = json_of(await _http("list_broadcasts", "GET", "broadcasts", params={"limit": "10"}))["items"]
    print("  GET /api/broadcasts, newest first: " + ", ".join(
        f"{b['name']} ({b['topic']}, by {b['issuedBy']})" for b in listed))
    summary = (f"the group's broadcast reached its {len(members)} members only, the fleet's reached all "
               f"{len(devices)} devices.")
    return summary, problems

