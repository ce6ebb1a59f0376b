"""One simulation against a deployment made by ``azd up`` (``--azure``).

``--via eventhubs`` (no certificates): the devices do not use MQTT. Each telemetry and
inference message is wrapped as the routed CloudEvent Event Grid delivers (``deviceid``
and ``clientrole`` enrichments, ``subject`` = the topic, JSON ``data``) and sent to the
stream's hub with the async ``azure-eventhub`` producer, batched per device (partition
key = device id, as routing delivers) every :data:`FLUSH_SECONDS`. Without MQTT there are
no life cycle events: the devices are never connected, so a command to one is ``pending``
(``OFFLINE_COMMAND_POLICY=queue``) or refused with 409 (``reject``) when the registry
knows the device (its client is registered in the Event Grid namespace), and 404 when it
does not; the check says which it expected for each. Pending commands are cancelled at
the end, so that a real device of that name never receives them.

``--via mqtt`` (X.509): the devices are :class:`tools.simulate.fleet.SimDevice` clients
of the namespace's MQTT broker (``mqtts://{EVENTGRID_MQTT_HOSTNAME}``, port 8883 unless the
name is ``HOST:PORT``) with client certificates made and registered by
:mod:`tools.simulate.device_certs` and :mod:`tools.simulate.arm_clients`, the username
being the device id (the authentication name); everything else is as in local mode.

Either way the operator's commands and broadcast go through the deployed HTTP API with
the function key, and the report is observed through what a deployment offers: the HTTP
API (registry, commands, alerts) and the data storage account's blobs
(:mod:`tools.simulate.stored`).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from shared.platform.timestamps import format_timestamp
from standins.eventhub_factory import EVENT_GRID_NAMESPACE, routed_body
from tools.simulate.fleet import SimDevice, behaviours
from tools.simulate.invariants import FINAL, unexpected
from tools.simulate.operator import BROADCAST, GROUPS, OPERATOR, Api, Options, publish, send_broadcast, send_commands
from tools.simulate.report import Report, latency_summary, reason_kind
from tools.simulate.stand_in import stream_of
from tools.simulate.stored import Sent, account, read_stored
from tools.simulate.target import Target, TargetError

FLUSH_SECONDS = 0.5
NO_BROKER = "mqtt://no-broker.invalid"  # a device without MQTT never connects (a reserved name, RFC 2606)
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"  # structured mode of the CloudEvents AMQP binding
POLL_SECONDS = 2.0


class AzureError(Exception):
    """The run cannot go on against the deployment; says why and what to do."""


@dataclass(frozen=True)
class AzureOptions:
    via: str = "eventhubs"
    settle: float = 120.0  # at most, for the messages to be stored and the commands to end
    prefix: str | None = None  # device ids {prefix}-NNN (default: sim-{random})
    certificates: Path | None = None  # default: tools.simulate.device_certs.DEFAULT_DIRECTORY
    keep_devices: bool = False  # --via mqtt: leave the clients registered (default: deleted at the end)


class HubDevice(SimDevice):
    """A simulated device without MQTT: what it publishes goes to :class:`HubSender`."""

    outbox: HubSender

    def __post_init__(self) -> None:
        super().__post_init__()
        self.online = True  # publishes; never connected as far as the broker knows

    def publish(self, topic: str, payload: bytes) -> None:
        with self._sent_lock:
            self.sent[(topic, payload)] = time.perf_counter()
        self.outbox.put(topic, payload)


class HubSender:
    """Routed CloudEvents to the hubs, batched per device, with the async producer."""

    def __init__(self, target: Target, credential: Any) -> None:
        self.target, self.credential = target, credential
        self.events = 0
        self.batches = 0
        self._queue: list[tuple[str, bytes]] = []
        self._producers: dict[str, Any] = {}

    def put(self, topic: str, payload: bytes) -> None:
        self._queue.append((topic, payload))

    def _producer(self, hub: str) -> Any:
        from azure.eventhub.aio import EventHubProducerClient

        if hub not in self._producers:
            if self.target.eventhub_connection_string:
                self._producers[hub] = EventHubProducerClient.from_connection_string(
                    self.target.eventhub_connection_string, eventhub_name=hub, retry_total=2)
            else:
                self._producers[hub] = EventHubProducerClient(
                    fully_qualified_namespace=str(self.target.eventhub_namespace), eventhub_name=hub,
                    credential=self.credential, retry_total=2)
        return self._producers[hub]

    async def flush(self) -> None:
        taken, self._queue = self._queue, []
        groups: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
        for topic, payload in taken:
            groups.setdefault((stream_of(topic), topic.split("/")[1]), []).append((topic, payload))
        await asyncio.gather(*(self._send(self.target.hub(stream), device, items)
                               for (stream, device), items in groups.items()))

    async def _send(self, hub: str, device: str, items: list[tuple[str, bytes]]) -> None:
        from azure.eventhub import EventData
        from azure.eventhub.exceptions import AuthenticationError, EventHubError

        producer = self._producer(hub)
        where = ("Event Hubs of --eventhub-connection-string" if self.target.eventhub_connection_string
                 else f"Event Hubs {self.target.eventhub_namespace}") + f", hub {hub}"
        namespace = self.target.eventgrid_namespace or EVENT_GRID_NAMESPACE
        try:
            batch = await producer.create_batch(partition_key=device)
            for topic, payload in items:
                event = EventData(routed_body(payload, topic=topic, at=datetime.now(UTC), namespace=namespace))
                event.content_type = CONTENT_TYPE
                try:
                    batch.add(event)
                except ValueError:  # full: send it, start another
                    await self._flush_batch(producer, batch)
                    batch = await producer.create_batch(partition_key=device)
                    batch.add(event)
            await self._flush_batch(producer, batch)
        except AuthenticationError as error:
            raise AzureError(f"{where} refused the credential: {error}. Your account needs Azure Event Hubs Data "
                             "Sender on the hub (azd env set GRANT_DEVELOPER_ACCESS true; azd provision)") from None
        except EventHubError as error:
            raise AzureError(f"{where}: {error}") from None

    async def _flush_batch(self, producer: Any, batch: Any) -> None:
        if len(batch):
            await producer.send_batch(batch)
            self.events += len(batch)
            self.batches += 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()
        await self.flush()

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self._producers.values()), return_exceptions=True)


def blob_service(target: Target, credential: Any) -> Any:
    from azure.storage.blob.aio import BlobServiceClient

    if target.storage_connection_string:
        return BlobServiceClient.from_connection_string(target.storage_connection_string)
    return BlobServiceClient(str(target.storage_blob_endpoint), credential=credential)


async def check_key(api: Api, target: Target) -> None:
    """One request with the key, so that a wrong key stops the run before it starts."""
    try:
        status, _ = await api.call("GET", "devices", params={"limit": "1"})
    except aiohttp.ClientError as error:
        raise AzureError(f"cannot reach the API at {target.function_url}: {error}") from None
    if status == 401:
        raise AzureError(f"the API at {target.function_url} refused the function key (401): give the app's key "
                         "with --function-key or FUNCTION_KEY, or leave both out to read it from Azure")
    if status != 200:
        raise AzureError(f"GET {target.function_url}/api/devices answered {status}")


async def simulate_azure(options: Options, azure: AzureOptions, target: Target, *, key: str,
                         credential: Any) -> Report:
    """The simulation against the deployment; the report with its checks."""
    rng = random.Random(options.seed)
    prefix = azure.prefix or f"sim-{secrets.token_hex(3)}"
    assigned = behaviours(options.devices, options.shares, rng)
    report = Report(devices=options.devices, rate=options.rate, duration=options.duration, faults=options.faults,
                    behaviours=dict(Counter(assigned)))
    async with aiohttp.ClientSession(headers=OPERATOR | {"x-functions-key": key}) as session:
        api = Api(session, target.function_url)
        await check_key(api, target)
        try:
            if azure.via == "eventhubs":
                await _via_eventhubs(options, azure, target, credential, api, prefix, assigned, rng, report)
            else:
                await _via_mqtt(options, azure, target, credential, api, prefix, assigned, rng, report)
        except RuntimeError as error:  # an operator request the API refused (tools.simulate.operator)
            raise AzureError(str(error)) from None
    return report


def _sent(fleet: list[SimDevice]) -> list[Sent]:
    """Every stream message published, with its wall-clock time."""
    offset = time.time() - time.perf_counter()
    return [Sent(topic, payload, at + offset) for d in fleet for (topic, payload), at in d.sent.items()
            if not topic.endswith("/response")]


async def _via_eventhubs(options: Options, azure: AzureOptions, target: Target, credential: Any, api: Api,
                         prefix: str, assigned: list[Any], rng: random.Random, report: Report) -> None:
    if not target.eventhub_connection_string:
        target.require("eventhub_namespace", why="--via eventhubs (or --eventhub-connection-string)")
    start = datetime.now(UTC)
    sender = HubSender(target, credential)
    fleet: list[SimDevice] = []
    for index, behaviour in enumerate(assigned):
        device = HubDevice(f"{prefix}-{index:03d}", NO_BROKER, behaviour=behaviour, group=GROUPS[index % len(GROUPS)])
        device.outbox = sender
        fleet.append(device)
    print(f"{len(fleet)} devices ({prefix}-000...) sending to Event Hubs "
          f"{'(--eventhub-connection-string)' if target.eventhub_connection_string else target.eventhub_namespace} "
          f"without MQTT, {options.rate:g} messages/s each for "
          f"{options.duration:g} s.", flush=True)
    stop = asyncio.Event()
    flusher = asyncio.create_task(sender.run(stop))
    try:
        publishing = asyncio.create_task(publish(options, fleet, rng))
        done, _ = await asyncio.wait({publishing, flusher}, return_when=asyncio.FIRST_COMPLETED)
        if flusher in done:  # it only ends early on an error
            publishing.cancel()
            await flusher
        tally = await publishing
    finally:
        stop.set()
        try:
            await flusher
        finally:
            await sender.close()
    report.published = dict(tally.kinds)
    print(f"Sent {sender.events} events in {sender.batches} batches.", flush=True)

    standing = {d.device_id: await _standing(api, d.device_id) for d in fleet}
    commands = await _offline_commands(options, api, fleet, standing, target.offline_command_policy)
    report.broadcasts = await send_broadcast(api)
    sent = _sent(fleet)
    await _report_streams(report, target, credential, prefix, start, sent, azure.settle)
    report.commands = dict(Counter(c["outcome"] for c in commands))
    await _alerts(api, report, start, {d.device_id for d in fleet})
    registry = {d.device_id: await _standing(api, d.device_id) for d in fleet}
    report.check("the registry's connection states equal the simulator's (no MQTT: none connected)",
                 [f"{device} is connected in the registry" for device, s in registry.items() if s == "online"])
    report.check("every command answered as the device's standing implies (unknown: 404; known and offline: "
                  f"{'pending' if target.offline_command_policy == 'queue' else '409'} under "
                  f"OFFLINE_COMMAND_POLICY={target.offline_command_policy})",
                 [f"{c['deviceId']}: {c['outcome']}, expected {c['expected']}" for c in commands
                  if c["outcome"] != c["expected"]])
    for command in commands:  # a real device of that name must never receive them
        if command["outcome"] == "pending":
            await api.call("POST", f"devices/{quote(command['deviceId'])}/commands/{command['commandId']}/cancel")


async def _standing(api: Api, device_id: str) -> str:
    """``unknown`` (no client registered: only its data, if anything, is known, state
    ``Unknown``), ``refused`` (disabled or deleted), ``online`` or ``offline``."""
    status, body = await api.call("GET", f"devices/{quote(device_id)}")
    if status == 404:
        return "unknown"
    if status != 200:
        raise AzureError(f"GET /api/devices/{device_id} answered {status}")
    if body.get("state") == "Unknown":
        return "unknown"
    if body.get("deleted") or body.get("state") == "Disabled":
        return "refused"
    return "online" if body.get("connected") else "offline"


async def _offline_commands(options: Options, api: Api, fleet: list[SimDevice], standing: dict[str, str],
                            policy: str) -> list[dict[str, Any]]:
    """Commands to devices that are not connected: what each answered and what it should."""
    count = options.commands if options.commands is not None else max(4, len(fleet) // 2)
    made = []
    for number in range(count):
        device = fleet[number % len(fleet)].device_id
        status, body = await api.call("POST", f"devices/{quote(device)}/commands",
                                      {"name": "set-exposure", "payload": {"ev": number}, "timeoutSeconds": 300})
        expected = {"unknown": "404", "refused": "409", "online": "sent",
                    "offline": "pending" if policy == "queue" else "409"}
        outcome = str(body.get("status")) if status == 202 and isinstance(body, dict) else str(status)
        made.append({"deviceId": device, "commandId": (body or {}).get("commandId") if status == 202 else None,
                     "outcome": outcome, "expected": expected[standing[device]]})
    print(f"{len(made)} commands sent over HTTP to devices that are not connected.", flush=True)
    return made


async def _report_streams(report: Report, target: Target, credential: Any, prefix: str, start: datetime,
                          sent: list[Sent], settle: float) -> None:
    """Wait (at most ``settle`` s) until the storage holds every message sent; the
    figures and the exactly-once check."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError

    deadline = time.monotonic() + settle
    async with blob_service(target, credential) as service:
        while True:
            try:
                stored = await read_stored(service, prefix, start)
            except (HttpResponseError, ServiceRequestError) as error:
                where = target.storage_blob_endpoint or "--storage"
                raise AzureError(f"reading the archive and dead letters at {where} failed: "
                                 f"{str(error).splitlines()[0]} (your account needs Storage Blob Data Reader or "
                                 "Contributor on the account: GRANT_DEVELOPER_ACCESS=true)") from None
            accounting = account(sent, stored)
            if not accounting.missing or time.monotonic() > deadline:
                break
            print(f"  waiting for {len(accounting.missing)} of {len(sent)} messages to be stored", flush=True)
            await asyncio.sleep(POLL_SECONDS)
    report.streams = {stream: {"sent": sum(1 for s in sent if s.stream == stream),
                               "routed": sum(1 for s in sent if s.stream == stream),
                               "archived": len(stored.lines[stream]), "deadLettered": len(stored.letters[stream]),
                               "deadLetterReasons": dict(Counter(reason_kind(letter["reason"])
                                                                 for letter in stored.letters[stream]))}
                      for stream in ("telemetry", "inference")}
    report.broker_duplicates = accounting.duplicates
    report.latency_ms = latency_summary(accounting.latencies_ms)
    if sent and accounting.stored_until is not None:
        report.throughput = round(sum(len(v) for v in (*stored.lines.values(), *stored.letters.values())) /
                                  max(accounting.stored_until - min(s.at for s in sent), 1e-9), 1)
    report.check("every message accounted for exactly once", accounting.problems())


async def _alerts(api: Api, report: Report, start: datetime, ids: set[str]) -> None:
    alerts = await api.pages("alerts", {"since": format_timestamp(start - timedelta(days=1)), "limit": "1000"})
    report.alerts = dict(Counter(a["rule"] for a in alerts if a["deviceId"] in ids))


# --------------------------------------------------------------------------- --via mqtt


async def _via_mqtt(options: Options, azure: AzureOptions, target: Target, credential: Any, api: Api,
                    prefix: str, assigned: list[Any], rng: random.Random, report: Report) -> None:
    """Devices as MQTT clients of the namespace with X.509 certificates (the certificate
    helpers come from :mod:`tools.simulate.device_certs` and :mod:`tools.simulate.arm_clients`)."""
    target.require("mqtt_hostname", "subscription_id", "resource_group", "eventgrid_namespace",
                   why="--via mqtt (registering the devices' certificates and connecting them)")
    from standins.edge import TlsClient, _address
    from tools.simulate import arm_clients, device_certs

    url = f"mqtts://{target.mqtt_hostname}"  # HOST[:PORT], the port 8883 by default
    try:
        _address(url)
    except ValueError as error:  # before anything is registered
        raise AzureError(f"EVENTGRID_MQTT_HOSTNAME (--mqtt-hostname) {target.mqtt_hostname!r} is no HOST[:PORT]: "
                         f"{error}") from None
    start = datetime.now(UTC)
    ids = [f"{prefix}-{index:03d}" for index in range(len(assigned))]
    groups = {device: GROUPS[index % len(GROUPS)] for index, device in enumerate(ids)}
    made = device_certs.ensure_certificates(ids, azure.certificates or device_certs.DEFAULT_DIRECTORY)
    fleet: list[SimDevice] = []
    try:
        await arm_clients.register_devices(made, subscription_id=str(target.subscription_id),  # ArmError: RuntimeError
                                           resource_group=str(target.resource_group),
                                           namespace=str(target.eventgrid_namespace), credential=credential,
                                           arm_url=target.arm_url,
                                           # arm_clients adds role=edge-device itself (and refuses it from us)
                                           attributes={d: {"type": "camera", "group": groups[d]} for d in ids})
        fleet += [SimDevice(cert.device_id, url, behaviour=behaviour, group=groups[cert.device_id],
                            tls=TlsClient(cert.certfile, cert.keyfile), username=cert.device_id)
                  for cert, behaviour in zip(made, assigned, strict=True)]
        for device in fleet:
            try:
                await asyncio.to_thread(device.connect)
            except (OSError, TimeoutError, ValueError) as error:
                raise AzureError(f"{error}. Event Grid takes a few seconds to apply a registration; a certificate "
                                 "replaced after it is not the registered one: run again (registering the "
                                 "certificates there are now), or check the namespace's clients") from None
        print(f"{len(fleet)} devices connected to {url} with their certificates.", flush=True)
        await _until(lambda: _registry(api), lambda found: all(found.get(d.device_id) for d in fleet),
                     azure.settle, "the registry to show every device connected")
        publishing = asyncio.create_task(publish(options, fleet, rng))
        commands = await send_commands(options, api, fleet)
        report.broadcasts = await send_broadcast(api)
        report.published = dict((await publishing).kinds)
        settled = await _until(lambda: api.current(commands),
                               lambda found: all(c["status"] in FINAL for c in found), azure.settle,
                               "every command to reach a final status")
        await _report_streams(report, target, credential, prefix, start, _sent(fleet), azure.settle)
        online = await _registry(api)
        report.commands = dict(Counter(c["status"] for c in settled))
        await _alerts(api, report, start, set(ids))
        report.check("the registry's connection states equal the simulator's",
                     [f"{d.device_id}: registry {online.get(d.device_id)}" for d in fleet
                      if online.get(d.device_id) != d.online])
        received = {d.device_id: [str(r.payload.get("commandId")) for r in d.commands] for d in fleet}
        report.check("every command in the status its device's behaviour implies",
                     unexpected(settled, {d.device_id: d.behaviour for d in fleet}, received))
        missing = [d.device_id for d in fleet if not any(b.payload.get("name") == BROADCAST["name"]
                                                         for b in d.broadcasts)]
        report.check("the broadcast reached every device", [f"{len(missing)} did not receive it"] if missing else [])
    finally:
        for device in fleet:
            if device.online:
                device.disconnect()
        if not azure.keep_devices:
            await _delete_devices(made, target, credential)


async def _delete_devices(made: list[Any], target: Target, credential: Any) -> None:
    """The run's clients deleted from the namespace and their keys from this machine, so
    that runs (each with new device ids) leave nothing behind; a failure is said, not
    raised, so that it hides no earlier error."""
    from tools.simulate import arm_clients

    try:
        await arm_clients.unregister_devices([c.device_id for c in made], subscription_id=str(target.subscription_id),
                                             resource_group=str(target.resource_group),
                                             namespace=str(target.eventgrid_namespace), credential=credential,
                                             arm_url=target.arm_url)
    except (arm_clients.ArmError, OSError) as error:
        print(f"The run's clients could not all be deleted from {target.eventgrid_namespace}: {error} "
              "(python -m tools.simulate.certs delete, or the portal)", flush=True)
        return
    for certificate in made:
        certificate.certfile.unlink(missing_ok=True)
        certificate.keyfile.unlink(missing_ok=True)
    print(f"{len(made)} clients deleted from {target.eventgrid_namespace}, their certificates from this machine "
          "(--keep-devices keeps them).", flush=True)


async def _registry(api: Api) -> dict[str, bool]:
    return {d["deviceId"]: bool(d["connected"]) for d in await api.pages("devices")}


async def _until(read: Any, done: Any, seconds: float, what: str) -> Any:
    """``read()`` again every :data:`POLL_SECONDS` until ``done(value)`` or ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = await read()
        if done(value) or time.monotonic() > deadline:
            return value
        print(f"  waiting for {what}", flush=True)
        await asyncio.sleep(POLL_SECONDS)


__all__ = ["AzureError", "AzureOptions", "TargetError", "simulate_azure"]
