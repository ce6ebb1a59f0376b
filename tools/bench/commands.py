"""Commands: latency and rate, a fleet job, and life cycle connects with and without queued commands."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tools.simulate.report import percentile

if TYPE_CHECKING:
    import azure.functions as func

    from standins.edge import Device
    from standins.storage_requests import Requests


COMMAND_SENDS = 200  # sequential sends, and as many baseline inserts + publishes
COMMAND_CHUNKS = 4  # baseline and ours alternate in chunks, so drift hits both alike
CONCURRENT_REQUESTS = 32
CONCURRENT_ROUNDS = 8
COMMAND_DEVICES = 4  # online devices the sends go to
FLEET_COMMAND_DEVICES = 1000
CONNECTS = 120  # life cycle connects of devices without, and as many with, a pending command
CONNECT_CHUNKS = 4
REGISTER_AT_ONCE = 32  # life cycle events in flight while devices are set up


def command_request(device_id: str, n: int) -> func.HttpRequest:
    from standins.invoke import http_request

    return http_request("POST", f"devices/{device_id}/commands", route_params={"deviceId": device_id},
                        body={"name": "reboot", "payload": {"delaySeconds": 5, "n": n}, "timeoutSeconds": 300})


async def lifecycle_events(documents: list[dict[str, Any]]) -> None:
    """``client_lifecycle`` over ``documents``, ``REGISTER_AT_ONCE`` at a time."""
    from standins.invoke import user_function

    handler = user_function("client_lifecycle")
    for i in range(0, len(documents), REGISTER_AT_ONCE):
        await asyncio.gather(*(handler(d) for d in documents[i:i + REGISTER_AT_ONCE]))


async def register(device_ids: list[str], *, attributes: dict[str, Any] | None = None) -> None:
    """Devices created in the registry, never connected."""
    from standins import event_factory as ev

    at = datetime.now(UTC) - timedelta(hours=1)
    await lifecycle_events([ev.created_or_updated(d, at, attributes=attributes) for d in device_ids])


async def connect(device_ids: list[str]) -> None:
    """The broker's connect events of registered devices: the registry says online."""
    from standins import event_factory as ev

    await lifecycle_events([ev.connected(d, 1, datetime.now(UTC) - timedelta(minutes=30)) for d in device_ids])


async def online_devices(tag: str, count: int) -> list[Device]:
    """Devices in the registry, connected to the broker and subscribed, answering
    nothing (so no answer competes with the sends)."""
    from shared.commands.settings import CommandSettings
    from shared.platform.settings import settings_of
    from standins.edge import Device

    broker = settings_of(CommandSettings).mqtt_broker_url
    devices = [Device(f"{tag}-online-{n}", broker, behaviour="silent") for n in range(count)]
    await register([d.device_id for d in devices])
    for device in devices:
        await asyncio.to_thread(device.connect)  # subscribed before the registry says connected
    await connect([d.device_id for d in devices])
    return devices


async def send_all(requests: list[func.HttpRequest], status: str) -> list[dict[str, Any]]:
    """``send_command`` for each request at once; each must be created with ``status``."""
    from standins.invoke import json_of, user_function

    handler = user_function("send_command")
    responses = await asyncio.gather(*(handler(r) for r in requests))
    sent = [json_of(r) for r in responses]
    for response, command in zip(responses, sent, strict=True):
        assert response.status_code == 202 and command["status"] == status, (response.status_code, command)
    return sent


async def command_latency(device: Device) -> dict[str, float]:
    """``send_command`` to an online device against one Table insert of a command row
    and one QoS 1 publish of the same message (PUBACK awaited), one at a time."""
    import orjson

    from shared.commands.models import Command
    from shared.commands.mqtt_transport import MqttTransport
    from shared.commands.service import publication
    from shared.commands.settings import CommandSettings
    from shared.commands.store import command_row, new_command_id
    from shared.platform.settings import settings_of
    from shared.platform.storage import data_store
    from shared.platform.storage_names import COMMANDS_TABLE
    from standins.invoke import user_function

    settings = settings_of(CommandSettings)
    bare = MqttTransport.from_url(settings.mqtt_broker_url, username=settings.mqtt_username,
                                  password=settings.mqtt_password)  # a connection of its own
    table = await data_store().table(COMMANDS_TABLE)
    handler = user_function("send_command")
    partition = f"~bench|{uuid.uuid4().hex[:8]}"  # beside the commands, in no device's partition

    def least(n: int) -> tuple[dict[str, Any], Any]:
        """The row and the message of a command, built before the clock starts."""
        now = datetime.now(UTC)
        command = Command(command_id=new_command_id(now), device_id=device.device_id, name="reboot",
                          payload={"delaySeconds": 5, "n": n}, status="pending", created_at=now,
                          expires_at=now + timedelta(seconds=300), issued_by="function-key")
        entity = {"PartitionKey": partition, "RowKey": command_row(command.command_id),
                  "doc": orjson.dumps(command.to_json_dict()).decode(), "status": command.status}
        return entity, publication(command, now)

    async def baseline(n: int) -> float:
        entity, message = least(n)
        start = time.perf_counter()
        await table.create_entity(entity)
        await bare.publish(message)
        return time.perf_counter() - start

    async def ours(n: int) -> float:
        request = command_request(device.device_id, n)
        start = time.perf_counter()
        response = await handler(request)
        elapsed = time.perf_counter() - start
        assert response.status_code == 202 and b'"status":"sent"' in response.get_body(), response.get_body()
        return elapsed

    try:
        for n in range(5):  # warm-up: clients, connections, models
            await baseline(-1 - n)
            await ours(-1 - n)
        base_s: list[float] = []
        ours_s: list[float] = []
        per_chunk = -(-COMMAND_SENDS // COMMAND_CHUNKS)
        for chunk in range(COMMAND_CHUNKS):
            numbers = range(chunk * per_chunk, min(COMMAND_SENDS, (chunk + 1) * per_chunk))
            base_s += [await baseline(n) for n in numbers]
            ours_s += [await ours(n) for n in numbers]
    finally:
        await bare.close()
    await asyncio.to_thread(device.wait_for, 2 * (5 + COMMAND_SENDS), timeout=30)  # every publish arrived
    base, median = statistics.median(base_s), statistics.median(ours_s)
    return {"command_baseline_ms": round(base * 1000, 2), "command_median_ms": round(median * 1000, 2),
            "command_p99_ms": round((percentile(ours_s, 99) or 0.0) * 1000, 2),
            "command_overhead_ratio": round(median / base, 2)}


async def commands_per_s(devices: list[Device]) -> dict[str, float]:
    """``CONCURRENT_REQUESTS`` sends at once, spread over the online devices, in rounds."""
    rounds = [[command_request(devices[i % len(devices)].device_id, r * CONCURRENT_REQUESTS + i)
               for i in range(CONCURRENT_REQUESTS)] for r in range(CONCURRENT_ROUNDS)]
    await send_all(rounds[0][:4], "sent")  # warm
    start = time.perf_counter()
    for requests in rounds:
        await send_all(requests, "sent")
    elapsed = time.perf_counter() - start
    return {"commands_per_s": round(CONCURRENT_REQUESTS * CONCURRENT_ROUNDS / elapsed, 1)}


async def lifecycle_connects() -> dict[str, float]:
    """Connect events, one at a time, of registered devices that never connected:
    without a pending command (a read and a write of the registry row and the index
    row, as before commands existed) and with one (which the connect publishes);
    alternating chunks."""
    from shared.commands.store import CommandStore
    from shared.platform.storage import data_store
    from standins import event_factory as ev
    from standins.invoke import user_function

    tag = uuid.uuid4().hex[:6]
    idle = [f"{tag}-idle-{n:04d}" for n in range(CONNECTS)]
    waiting = [f"{tag}-waiting-{n:04d}" for n in range(CONNECTS)]
    await register(idle + waiting)
    queued = []
    for i in range(0, CONNECTS, REGISTER_AT_ONCE):
        queued += await send_all([command_request(d, 0) for d in waiting[i:i + REGISTER_AT_ONCE]], "pending")
    handler = user_function("client_lifecycle")
    at = datetime.now(UTC) - timedelta(minutes=1)

    cpu = {"idle": 0.0}

    async def connects(devices: list[str]) -> float:
        documents = [ev.connected(d, 1, at) for d in devices]
        start, started = time.perf_counter(), time.process_time()
        for document in documents:
            await handler(document)
        if devices and devices[0] in idle:
            cpu["idle"] += time.process_time() - started
        return time.perf_counter() - start

    idle_s = waiting_s = 0.0
    per_chunk = -(-CONNECTS // CONNECT_CHUNKS)
    for chunk in range(CONNECT_CHUNKS):
        part = slice(chunk * per_chunk, (chunk + 1) * per_chunk)
        idle_s += await connects(idle[part])
        waiting_s += await connects(waiting[part])
    store = CommandStore(data_store())
    after = await asyncio.gather(*(store.get(c["deviceId"], c["commandId"]) for c in queued))
    assert all(c is not None and c.status == "sent" for c in after), "each connect published its command"
    return {"lifecycle_connects_per_s_no_pending": round(CONNECTS / idle_s, 1),
            "lifecycle_connects_per_s_with_pending": round(CONNECTS / waiting_s, 1),
            # The worker's CPU per connect: what a connect storm costs in instances.
            "lifecycle_connect_cpu_us": round(cpu["idle"] / CONNECTS * 1e6, 1)}


async def counted_connect(*, pending: bool) -> tuple[str, Requests]:
    """The device and the storage requests of its connect event: registered, never
    connected, with one pending command or none, in a worker that has handled one
    such connect already (tables known)."""
    from standins import event_factory as ev
    from standins.invoke import user_function
    from standins.storage_requests import counted_requests

    tag = uuid.uuid4().hex[:6]
    warm, device = f"{tag}-warm", f"{tag}-counted"
    await register([warm, device])
    if pending:
        await send_all([command_request(warm, 0), command_request(device, 0)], "pending")
    handler = user_function("client_lifecycle")
    at = datetime.now(UTC) - timedelta(minutes=1)
    async with counted_requests() as requests:
        await handler(ev.connected(warm, 1, at))
        requests.seen.clear()
        await handler(ev.connected(device, 1, at))
    return device, requests


async def fleet_seconds() -> dict[str, float]:
    """Seconds from a fleet command's request (targeting by attribute) until all of its
    ``FLEET_COMMAND_DEVICES`` commands are ``sent``: the first ones inline, the rest
    through the ``fleet-fanout`` queue, drained as the host's trigger would."""
    from standins.invoke import drain_queue, http_request, json_of, user_function

    tag = uuid.uuid4().hex[:6]
    devices = [f"{tag}-fleet-{n:04d}" for n in range(FLEET_COMMAND_DEVICES)]
    # Online by their life cycle events; no MQTT client is needed: the broker
    # acknowledges a publish that no one subscribes to.
    await register(devices, attributes={"benchFleet": tag})
    await connect(devices)
    get_job = user_function("get_fleet_command")
    start = time.perf_counter()
    response = await user_function("send_fleet_command")(http_request(
        "POST", "commands", body={"name": "snapshot", "target": {"attributes": {"benchFleet": tag}}}))
    assert response.status_code == 202, response.get_body()
    job = json_of(response)
    assert job["total"] == FLEET_COMMAND_DEVICES, job
    counts = job["counts"]
    while counts.get("sent") != FLEET_COMMAND_DEVICES:
        handled = await drain_queue("fleet-fanout", "fleet_fanout")
        counts = json_of(await get_job(http_request("GET", f"commands/{job['jobId']}",
                                                    route_params={"jobId": job["jobId"]})))["counts"]
        assert handled or counts.get("sent") == FLEET_COMMAND_DEVICES, f"nothing left to do, yet {counts}"
    return {f"fleet_{FLEET_COMMAND_DEVICES}_seconds": round(time.perf_counter() - start, 2)}


async def command_figures() -> dict[str, float]:
    """The command figures; ``MQTT_BROKER_URL`` and ``AzureWebJobsStorage`` must point
    at the broker and the Azurite in use."""
    from shared.commands.transports import reset_transport
    from shared.platform.host_storage import reset_queues

    await reset_transport()  # built from the settings as they are now
    devices = await online_devices(uuid.uuid4().hex[:6], COMMAND_DEVICES)
    try:
        figures = await command_latency(devices[0])
        figures |= await commands_per_s(devices)
        figures |= await lifecycle_connects()
        for pending in (False, True):
            _, requests = await counted_connect(pending=pending)
            figures[f"connect_requests_{'with' if pending else 'no'}_pending"] = float(len(requests.seen))
        return figures | await fleet_seconds()
    finally:
        for device in devices:
            await asyncio.to_thread(device.disconnect)
        await reset_transport()
        await reset_queues()


def describe(figures: dict[str, Any]) -> list[str]:
    """What ``make bench`` prints of this module's figures."""
    fleet = f"fleet_{FLEET_COMMAND_DEVICES}_seconds"
    return [
        f"commands: send_command to an online device {figures['command_median_ms']} ms median, "
        f"p99 {figures['command_p99_ms']} ms; Table insert + QoS 1 publish to PUBACK "
        f"{figures['command_baseline_ms']} ms; ratio {figures['command_overhead_ratio']} (target <= 3)",
        f"commands: {figures['commands_per_s']} commands/s with {CONCURRENT_REQUESTS} requests at once "
        f"to {COMMAND_DEVICES} online devices",
        f"fleet command: {figures[fleet]} s from the request until all {FLEET_COMMAND_DEVICES} commands are sent",
        f"life cycle connects: {figures['lifecycle_connects_per_s_no_pending']}/s with nothing pending "
        f"({figures['connect_requests_no_pending']:.0f} storage requests each: registry row read and write, "
        f"connected index row), {figures['lifecycle_connects_per_s_with_pending']}/s with one pending command "
        f"({figures['connect_requests_with_pending']:.0f} requests, and its publish); "
        f"{figures['lifecycle_connect_cpu_us']} us of worker CPU a connect",
    ]
