"""``make demo``: a day in the life of a small fleet, replayed through the app.

Starts Azurite in memory on free ports, delivers a scripted day of Event Grid MQTT
client life cycle events to ``client_lifecycle`` (shuffled, with duplicates, and one
malformed event), then prints the registry and the alerts as the HTTP API returns
them. Then the same devices' telemetry and inference results of that day, while
they were connected, go through ``telemetry_ingest`` and ``inference_ingest`` as
Event Hub batches of two partitions per hub, bad and spoofed messages included, and
a range of one partition is delivered again; it prints what was archived,
dead-lettered and alerted, and checks that every message sent is in exactly one
place. Then Mosquitto starts and the connected devices come online as MQTT v5
clients: commands, a queue for an offline device, an idempotent retry, a fleet job
and broadcasts go to them (:mod:`tools.demo_commands`), and every command must end
in the status its device's behaviour implies. Exit status 1 when either check
fails. Runs on embedded defaults; no setting or cloud resource is needed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER, INFERENCE_CONTAINER, TELEMETRY_CONTAINER
from shared.platform.timestamps import parse_timestamp
from tools import event_factory as ev
from tools.eventhub_factory import Partition, routed_body
from tools.invoke import InvocationContext, http_request, json_of, retry_policy, run_against_azurite, user_function

FLAP_WINDOW_SECONDS = 600


def scripted_day(start: datetime) -> list[dict[str, Any]]:
    """Six devices' day, in the order things happened."""

    def at(hours: float) -> datetime:
        return start + timedelta(hours=hours)

    inspection = {"site": "plant-3", "type": "camera", "group": "inspection"}  # the group: broadcasts, later
    fleet = {"camera-017": inspection, "camera-018": inspection,
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


async def replay(start: datetime) -> list[dict[str, Any]]:
    """The life cycle part; returns the day's events."""
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
    container = await data_store().container(DEADLETTER_CONTAINER)
    print("\nDead letters (container 'deadletter'):")
    async for blob in container.list_blobs(name_starts_with="lifecycle/"):
        letter = json.loads(await (await container.download_blob(blob.name)).readall())
        print(f"  {blob.name}\n    reason: {letter['reason']}; errors: "
              + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in letter["errors"]))
    return events


# --------------------------------------------------------------------------- telemetry and inference

HUB_PARTITIONS = ("0", "1")  # infra's default eventHubPartitionCount
BATCH_SIZE = 100  # events per invocation; host.json allows up to 256
REPLAY_BATCH_SIZE = 64
TELEMETRY_EVERY = timedelta(minutes=5)
INFERENCE_EVERY = timedelta(minutes=10)
INSPECTION_HOURS = (10, 16)  # the cameras publish inference results in this shift
MODEL = "yolo-v8"
CANARY = ("camera-017", 13)  # runs yolo-v8 8.2 from 13:00; the other cameras stay on 8.1
STORM = ("camera-017", 13)  # overheats from 13:00 for a quarter of an hour
LABELS = ("person", "forklift", "pallet", "helmet")
BROKER_DELAY = timedelta(milliseconds=50)  # device clock to the broker's receipt
HUB_DELAY = timedelta(milliseconds=120)  # device clock to the hub's enqueued time
SHOWN_DEVICE = "camera-017"

Place = tuple[str, str, int, int | None]  # stream, partition, sequence number, position in an array


@dataclass(frozen=True, slots=True)
class Sent:
    """One event body that a device (or a dataflow) sent towards a hub."""

    stream: str
    device: str  # the partition key: the deviceid enrichment
    at: datetime  # by the device's clock
    body: bytes
    messages: int = 1  # the elements of an array body


def hub_partition(device_id: str) -> str:
    """A partition per device, as Event Hubs gives one per partition key (Event Grid
    delivers with ``PartitionKey`` = the ``deviceid`` enrichment): a stable hash
    stands in for the service's own."""
    import hashlib

    digest = hashlib.sha256(device_id.encode()).digest()
    return list(HUB_PARTITIONS)[digest[0] % len(HUB_PARTITIONS)]


def sessions(events: list[dict[str, Any]], end: datetime) -> dict[str, list[tuple[datetime, datetime]]]:
    """When each device was connected, from the day's life cycle events."""
    marks: dict[str, list[tuple[datetime, bool]]] = {}
    for event in events:
        kind = event["eventType"].removeprefix(ev.PREFIX)
        if kind in ("MQTTClientSessionConnected", "MQTTClientSessionDisconnected"):
            marks.setdefault(event["data"]["clientAuthenticationName"], []).append(
                (parse_timestamp(event["eventTime"], field="eventTime"), kind == "MQTTClientSessionConnected"))
    spans: dict[str, list[tuple[datetime, datetime]]] = {}
    for device, seen in marks.items():
        opened: datetime | None = None
        for at, up in sorted(seen):
            if up and opened is None:
                opened = at
            elif not up and opened is not None:
                spans.setdefault(device, []).append((opened, at))
                opened = None
        if opened is not None:
            spans.setdefault(device, []).append((opened, end))
    return spans


def _ticks(spans: list[tuple[datetime, datetime]], start: datetime, every: timedelta,
           phase: timedelta) -> list[datetime]:
    """``start + phase + k * every`` within the spans."""
    found = []
    for opened, closed in spans:
        tick = start + phase + math.ceil((opened - start - phase) / every) * every
        while tick < closed:
            found.append(tick)
            tick += every
    return found


def _zulu(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _routed(stream: str, device: str, at: datetime, payload: Any) -> Sent:
    return Sent(stream, device, at, routed_body(payload, topic=f"devices/{device}/{stream}", at=at + BROKER_DELAY))


def _metrics(device: str, hour: float, rng: random.Random) -> dict[str, Any]:
    kind = device.split("-")[0]
    warmth = 8 * math.sin(math.pi * (hour - 6) / 12) + (6 if kind == "camera" else 0)
    metrics: dict[str, Any] = {"cpuTemp": round(55 + warmth + rng.uniform(-2, 2), 1)}
    if kind == "camera":
        metrics["fps"] = 30
    if (device, int(hour)) == STORM and hour % 1 < 0.25:
        metrics.update(cpuTemp=round(rng.uniform(86.5, 91), 1), fps=12)
    if kind == "sensor":
        metrics["battery"] = round(100 - 3.5 * hour, 1)
    if kind == "gateway":
        metrics["rssi"] = rng.randint(-70, -54)
    if kind == "plc":
        metrics["cycleTimeMs"] = rng.randint(401, 419)
    return metrics


def _inference(device: str, at: datetime, hour: float, rng: random.Random) -> dict[str, Any]:
    version = "8.2" if device == CANARY[0] and hour >= CANARY[1] else "8.1"
    latency = rng.uniform(24, 34) if version == "8.2" else rng.uniform(35, 47)
    detections = [{"label": rng.choice(LABELS), "confidence": round(rng.uniform(0.5, 0.97), 2)}
                  for _ in range(rng.randint(0, 3))]
    return {"timestamp": _zulu(at), "inferenceId": f"{device}-{at:%H%M%S}",
            "model": {"name": MODEL, "version": version}, "latencyMs": round(latency, 1), "detections": detections}


def incidents(start: datetime) -> list[Sent]:
    """The day's broken, bad, spoofed and alarming messages."""

    def at(hour: int, minute: int, second: int = 0) -> datetime:
        return start + timedelta(hours=hour, minutes=minute, seconds=second)

    line = [{"deviceId": "plc-line2-04", "timestamp": _zulu(at(16, 30, s)), "metrics": {"pressureBar": bar}}
            for s, bar in ((0, 6.1), (10, 6.3), (20, 6.2))]
    del line[1]["metrics"]
    return [
        _routed("telemetry", "plc-line2-04", at(9, 12, 5),  # cut short: broken JSON
                f'{{"timestamp": "{_zulu(at(9, 12, 5))}", "metrics": {{"cpuTemp": 47.5, "cycleTi'.encode()),
        _routed("telemetry", "sensor-ü-7", at(10, 31, 7),
                f'{{"timestamp": "{_zulu(at(10, 31, 7))}", "metrics": {{"battery": NaN}}}}'.encode()),
        _routed("telemetry", "camera-018", at(11, 2), {"timestamp": f"{at(11, 2):%Y-%m-%dT%H:%M:%S}",
                                                       "metrics": {"cpuTemp": 61.0}}),
        _routed("inference", "camera-099", at(12, 10, 30), {
            "timestamp": _zulu(at(12, 10, 30)), "inferenceId": "camera-099-121030",
            "model": {"name": MODEL, "version": "8.1"}, "detections": [{"label": "person", "confidence": "0.87"}]}),
        _routed("inference", "camera-099", at(14, 23, 41), {
            "timestamp": _zulu(at(14, 23, 41)), "inferenceId": "camera-099-142341",
            "model": {"name": MODEL, "version": "8.1"}, "latencyMs": 44.0,
            "detections": [{"label": "fire", "confidence": 0.91}, {"label": "person", "confidence": 0.77}]}),
        # An Azure IoT Operations dataflow forwards the line's PLC readings as one array.
        Sent("telemetry", "plc-line2-04", at(16, 30, 25), orjson.dumps(line), messages=len(line)),
        # gateway-west, compromised, claims to be camera-017 and reports it burning.
        _routed("telemetry", "gateway-west", at(20, 0, 9), {"deviceId": "camera-017", "timestamp": _zulu(at(20, 0, 9)),
                                                           "metrics": {"cpuTemp": 99.0}}),
    ]


def stream_day(start: datetime, spans: dict[str, list[tuple[datetime, datetime]]]) -> list[Sent]:
    """What the fleet sends while connected: telemetry every 5 minutes, inference
    results every 10 minutes of the inspection shift (cameras), and the incidents."""
    rng = random.Random(7)
    sent = []
    for index, device in enumerate(sorted(spans)):
        phase = timedelta(seconds=23 + 37 * index)
        for sequence, tick in enumerate(_ticks(spans[device], start, TELEMETRY_EVERY, phase)):
            hour = (tick - start) / timedelta(hours=1)
            sent.append(_routed("telemetry", device, tick, {"timestamp": _zulu(tick), "sequence": sequence,
                                                            "metrics": _metrics(device, hour, rng)}))
        if device.startswith("camera-"):
            for tick in _ticks(spans[device], start, INFERENCE_EVERY, phase):
                hour = (tick - start) / timedelta(hours=1)
                if INSPECTION_HOURS[0] <= hour < INSPECTION_HOURS[1]:
                    sent.append(_routed("inference", device, tick, _inference(device, tick, hour, rng)))
    return sent + incidents(start)


def publish(sent: list[Sent], start: datetime) -> tuple[dict[tuple[str, str], Partition], Counter[Place]]:
    """Each body into its hub's partition in the order of time; and where each
    message should end (once)."""
    logs: dict[tuple[str, str], Partition] = {}
    expected: Counter[Place] = Counter()
    for item in sorted(sent, key=lambda s: s.at):
        partition = hub_partition(item.device)
        log = logs.setdefault((item.stream, partition), Partition(item.stream, partition, first_enqueued=start))
        [sequence] = log.publish([item.body], partition_keys=[item.device], enqueued=[item.at + HUB_DELAY])
        positions: list[int | None] = list(range(item.messages)) if item.messages > 1 else [None]
        expected.update((item.stream, partition, sequence, position) for position in positions)
    return dict(sorted(logs.items())), expected


def misplaced(expected: Counter[Place], found: Counter[Place]) -> list[str]:
    """What keeps ``found`` (archive lines and dead letters by origin) from holding
    each message of ``expected`` exactly once; empty when nothing does."""

    def order(place: Place) -> tuple[str, str, int, int]:
        return place[0], place[1], place[2], -1 if place[3] is None else place[3]

    problems = []
    for what, places in (("missing", set(expected) - set(found)),
                         ("in more than one place", {p for p, n in found.items() if n > 1}),
                         ("never sent", set(found) - set(expected))):
        if places:
            problems.append(f"{len(places)} {what}, e.g. {min(places, key=order)}")
    return problems


async def deliver(log: Partition, size: int, wanted: range | None = None) -> None:
    """``log`` to its ingest function in batches, as the host does."""
    name = f"{log.hub}_ingest"
    handler = user_function(name)
    retries = int(retry_policy(name)["max_retry_count"])
    for batch in log.batches(size, wanted):
        await handler(batch, InvocationContext(name, max_retry_count=retries))


async def stored(stream: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The archive lines and dead letters of ``stream``, read from their blobs."""
    lines: list[dict[str, Any]] = []
    letters: list[dict[str, Any]] = []
    for name, prefix, into in ((TELEMETRY_CONTAINER if stream == "telemetry" else INFERENCE_CONTAINER, None, lines),
                               (DEADLETTER_CONTAINER, f"{stream}/", letters)):
        container = await data_store().container(name)
        async for blob in container.list_blobs(name_starts_with=prefix):
            data = await (await container.download_blob(blob.name)).readall()
            into.extend(orjson.loads(line) for line in data.splitlines() if line)
    return lines, letters


async def places() -> tuple[Counter[Place], dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]]:
    """Where every message is: each archive line and dead letter by its origin."""
    found: Counter[Place] = Counter()
    both = {stream: await stored(stream) for stream in ("telemetry", "inference")}
    for stream, (lines, letters) in both.items():
        for item in (*lines, *letters):
            origin = item["eventHub"]
            found[(stream, origin["partitionId"], origin["sequenceNumber"], origin.get("position"))] += 1
    return found, both


async def _get(function: str, path: str, **kwargs: Any) -> Any:
    return json_of(await user_function(function)(http_request("GET", path, **kwargs)))


async def streams(start: datetime, events: list[dict[str, Any]]) -> bool:
    """The stream part; False when a message is not in exactly one place."""
    sent = stream_day(start, sessions(events, start + timedelta(days=1)))
    logs, expected = publish(sent, start)
    routing = {p: sorted({s.device for s in sent if hub_partition(s.device) == p}) for p in HUB_PARTITIONS}
    print(f"\nTelemetry and inference of the same day: {len(sent)} event bodies from the devices while connected "
          "(and an IoT Operations dataflow),\nrouted by partition key deviceid to two partitions per hub, "
          f"delivered to telemetry_ingest and inference_ingest in batches of up to {BATCH_SIZE}:")
    for partition, devices in routing.items():
        print(f"  partition {partition}: {', '.join(devices)}")
    await asyncio.gather(*(deliver(log, BATCH_SIZE) for log in logs.values()))

    found, both = await places()
    print(f"\n  {'stream':<10} {'events':>6} {'messages':>8} {'archived':>8} {'dead-lettered':>13}")
    for stream, (lines, letters) in both.items():
        print(f"  {stream:<10} {sum(1 for s in sent if s.stream == stream):>6} "
              f"{sum(1 for p in expected if p[0] == stream):>8} {len(lines):>8} {len(letters):>13}")
    print("\nDead letters by reason (container 'deadletter'):")
    for stream, (_, letters) in both.items():
        for reason, count in sorted(Counter(d["reason"] for d in letters).items()):
            print(f"  {stream:<10} {count:>2}  {reason}")

    # A new instance takes a partition over (nothing in memory) and is handed an
    # overlapping range again, with other batch boundaries.
    log = max((log for (stream, _), log in logs.items() if stream == "telemetry"), key=lambda p: len(p.log))
    again = range(len(log.log) // 4, 3 * len(log.log) // 4)
    await data_store().close()
    await deliver(log, REPLAY_BATCH_SIZE, again)
    replayed, after = await places()
    lines_before, letters_before = both["telemetry"]
    lines_after, letters_after = after["telemetry"]
    print(f"\nReplay: a new instance gets telemetry partition {log.partition_id}'s sequence numbers "
          f"{again.start}-{again.stop - 1} again, in batches of {REPLAY_BATCH_SIZE}:\n"
          f"  archive lines {len(lines_before)} before, {len(lines_after)} after; "
          f"dead letters {len(letters_before)} before, {len(letters_after)} after.")

    alerts = (await _get("list_alerts", "alerts", params={"since": (start - timedelta(days=1)).isoformat()}))["items"]
    ours = [a for a in alerts if a["stream"] in ("telemetry", "inference")]
    hot = sum(1 for line in lines_after if isinstance(line["metrics"].get("cpuTemp"), int | float)
              and line["metrics"]["cpuTemp"] > 85)
    print(f"\nAlerts raised by the streams, GET /api/alerts ({len(ours)}; the {hot} archived readings of cpuTemp "
          "over 85 fall in one cooldown window):")
    for alert in ours:
        print(f"  {alert['timestamp'][:19]}  {alert['severity']:<8} {alert['rule']:<13} {alert['stream']:<10}"
              f"{alert['message']}")

    device = await _get("get_device", f"devices/{SHOWN_DEVICE}", route_params={"deviceId": SHOWN_DEVICE})
    print(f"\nLatest state of {SHOWN_DEVICE}, GET /api/devices/{SHOWN_DEVICE}:")
    telemetry = device["telemetry"]
    print(f"  telemetry  {telemetry['timestamp'][:19]}  "
          + ", ".join(f"{name} {value}" for name, value in telemetry["metrics"].items()))
    for model, result in device["inference"].items():
        print(f"  inference  {result['timestamp'][:19]}  {model} {result['version']}, {result['latencyMs']} ms: "
              + (", ".join(f"{d['label']} {d['confidence']}" for d in result["detections"]) or "no detections"))

    stats = await _get("get_model_stats", f"models/{MODEL}/stats", route_params={"modelName": MODEL},
                       params={"since": start.isoformat(), "until": (start + timedelta(days=1)).isoformat()})
    print(f"\nModel {MODEL}, GET /api/models/{MODEL}/stats:")
    print(f"  {'hour':<16}  {'version':<7} {'results':>7} {'mean latency':>12}  labels")
    for item in stats["items"]:
        labels = ", ".join(f"{label} {n}" for label, n in sorted(item["labels"].items(), key=lambda kv: -kv[1]))
        latency = f"{item['latencyMsMean']:>9.1f} ms" if "latencyMsMean" in item else f"{'-':>12}"
        print(f"  {item['hour'][:16]}  {item['version']:<7} {item['count']:>7} {latency}  {labels}")

    problems = misplaced(expected, replayed) + (["the replay changed where messages are"]
                                                  if replayed != found else [])
    if problems:
        print("\nFAILED: not every message sent is in exactly one place: " + "; ".join(problems))
        return False
    archived = sum(len(lines) for lines, _ in after.values())
    dead = sum(len(letters) for _, letters in after.values())
    print(f"\nEvery message sent is in exactly one place: {sum(expected.values())} sent = {archived} archive "
          f"lines + {dead} dead letters; none twice, none missing, the replay changed nothing.")
    return True


async def day(start: datetime) -> bool:
    from tools.demo_commands import commands

    streamed = await streams(start, await replay(start))
    return await commands() and streamed


def main() -> None:
    # The app's log on stdout, so that it stays in order with the demo's own lines.
    logging.basicConfig(level=logging.WARNING, format="  [app log] %(message)s", stream=sys.stdout)
    start = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    print("Starting Azurite (in memory) on free ports.")
    ok = run_against_azurite(lambda: day(start), {"FLAPPING_DISCONNECTS": "4",
                                                  "FLAPPING_WINDOW_SECONDS": str(FLAP_WINDOW_SECONDS)})
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
