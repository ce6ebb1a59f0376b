"""The simulated fleet: devices that are real MQTT v5 clients (:class:`standins.edge.Device`)
publishing telemetry and inference results at a rate, with bad and spoofed messages
on demand, and answering commands by behaviour."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shared.platform.timestamps import format_timestamp
from standins.edge import Behaviour, Device
from tools.simulate.stand_in import Key

BEHAVIOURS: tuple[Behaviour, ...] = ("succeed", "fail", "reject", "silent")
DEFAULT_SHARES = {"succeed": 0.55, "fail": 0.15, "reject": 0.15, "silent": 0.15}
MODEL = {"name": "yolo-v8", "version": "8.1"}
BAD_EVERY = 10  # with --bad, one message in ten of each device is bad; with --spoofed, another one
LABELS = ("person", "forklift", "pallet", "helmet")


class SimDevice(Device):
    """A :class:`Device` that also publishes, knows whether its client is online, and
    can lose its connection as a device on a bad network does."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.online = False
        self.sent: dict[Key, float] = {}  # each message published, when (perf_counter)
        self._sent_lock = threading.Lock()

    def cut(self) -> None:
        """The connection lost without a DISCONNECT packet: the socket is shut under paho.
        The broker sees the TCP connection close (the session stays, being persistent);
        paho's loop sees it too and reconnects by itself after its reconnect delay
        (1 s), resuming the session and sending its unacknowledged messages again."""
        self.online = False
        self.acknowledged.clear()
        sock = self._client.socket()
        if isinstance(sock, socket.socket):  # a TLS socket is one too
            sock.shutdown(socket.SHUT_RDWR)

    def reconnected(self, timeout: float = 15) -> None:
        """Return once paho has reconnected after :meth:`cut`."""
        if not self.acknowledged.wait(timeout):
            raise TimeoutError(f"{self.device_id} did not reconnect within {timeout} s")
        self.online = True

    def connect(self, timeout: float = 10) -> None:
        super().connect(timeout)
        self.online = True

    def disconnect(self) -> None:
        self.online = False
        super().disconnect()

    def publish(self, topic: str, payload: bytes) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = "application/json"  # the broker routes it as JSON (``data``)
        with self._sent_lock:
            self.sent[(topic, payload)] = time.perf_counter()
        self._client.publish(topic, payload, qos=1, properties=props)


def behaviours(count: int, shares: dict[str, float], rng: random.Random) -> list[Behaviour]:
    """A behaviour per device by ``shares``; each behaviour with a share once at least
    when there are devices enough, so that every path is taken."""
    chosen: list[Behaviour] = [b for b in BEHAVIOURS if shares.get(b, 0) > 0][:count]
    weights = [shares.get(b, 0) for b in BEHAVIOURS]
    chosen += rng.choices(BEHAVIOURS, weights=weights, k=count - len(chosen))
    return chosen


@dataclass(frozen=True)
class Shape:
    """What the devices publish: the share of inference results among their messages,
    the metrics of a telemetry message (``cpuTemp``, ``fps``, then ``m3``...) and the
    most detections of an inference result."""

    inference_share: float = 1 / 3
    metrics: int = 2
    detections: int = 3

    def is_inference(self, number: int) -> bool:
        """Whether the ``number``-th message is an inference result: exactly the share,
        spread evenly (with 1/3, every third)."""
        return int((number + 1) * self.inference_share) > int(number * self.inference_share)

    def metric_values(self, rng: random.Random) -> dict[str, float]:
        values = {"cpuTemp": round(rng.uniform(50, 88), 1), "fps": 30.0}
        values |= {f"m{n}": round(rng.uniform(0, 100), 2) for n in range(3, self.metrics + 1)}
        return dict(list(values.items())[:self.metrics])


@dataclass(frozen=True)
class Faults:
    bad: bool = False
    spoofed: bool = False


def message(device: SimDevice, index: int, number: int, faults: Faults, others: list[str],
            rng: random.Random, shape: Shape = Shape()) -> tuple[str, bytes, str]:
    """The ``number``-th message of the ``index``-th device: its topic, payload and kind
    (``ok``, ``bad`` or ``spoofed``), shaped by ``shape``."""
    now = datetime.now(UTC)
    stream = "inference" if shape.is_inference(number) else "telemetry"
    topic = f"devices/{device.device_id}/{stream}"
    slot = (number + index) % BAD_EVERY
    if faults.bad and slot == 3:
        broken = [f'{{"timestamp": "{format_timestamp(now)}", "metrics": {{"cpuTemp": 4'.encode(),  # cut short
                  f'{{"timestamp": "{format_timestamp(now)}", "metrics": {{"cpuTemp": NaN}}}}'.encode(),
                  orjson.dumps({"timestamp": now.strftime("%Y-%m-%dT%H:%M:%S"), "metrics": {"cpuTemp": 50.0}})]
        return f"devices/{device.device_id}/telemetry", broken[number % len(broken)], "bad"
    if faults.spoofed and slot == 7 and others:
        payload = {"deviceId": rng.choice(others), "timestamp": format_timestamp(now), "sequence": number,
                   "metrics": {"cpuTemp": 99.0}}
        return f"devices/{device.device_id}/telemetry", orjson.dumps(payload), "spoofed"
    if stream == "inference":
        return topic, orjson.dumps({
            "timestamp": format_timestamp(now), "inferenceId": f"{device.device_id}-{number}", "model": MODEL,
            "latencyMs": round(rng.uniform(20, 50), 1),
            "detections": [{"label": rng.choice(LABELS), "confidence": round(rng.uniform(0.5, 0.97), 2)}
                           for _ in range(rng.randint(0, shape.detections))]}), "ok"
    return topic, orjson.dumps({"timestamp": format_timestamp(now), "sequence": number,
                                "metrics": shape.metric_values(rng)}), "ok"


@dataclass
class Publishing:
    """What the fleet published, by kind (``ok``, ``bad``, ``spoofed``)."""

    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.kinds.values())


async def publish_for(device: SimDevice, index: int, *, rate: float, until: float, faults: Faults,
                      others: list[str], rng: random.Random, tally: Publishing, shape: Shape = Shape()) -> None:
    """Publish at ``rate`` messages per second until ``until`` (monotonic), skipping the
    ticks when the client is offline."""
    interval = 1 / rate
    await asyncio.sleep(rng.uniform(0, interval))  # devices are not in step
    number = 0
    while time.monotonic() < until:
        if device.online:
            topic, payload, kind = message(device, index, number, faults, others, rng, shape)
            device.publish(topic, payload)
            tally.kinds[kind] = tally.kinds.get(kind, 0) + 1
            number += 1
        await asyncio.sleep(interval)


async def publish_fleet(fleet: list[SimDevice], *, rate: float, duration: float, faults: Faults, shape: Shape,
                        rng: random.Random) -> Publishing:
    """Every device publishing (:func:`publish_for`) for ``duration`` seconds from now,
    each with a random generator of its own drawn from ``rng``; what they published."""
    until = time.monotonic() + duration
    tally = Publishing()
    ids = [d.device_id for d in fleet]
    await asyncio.gather(*(publish_for(d, i, rate=rate, until=until, faults=faults,
                                       others=[x for x in ids if x != d.device_id],
                                       rng=random.Random(rng.random()), tally=tally, shape=shape)
                           for i, d in enumerate(fleet)))
    return tally
