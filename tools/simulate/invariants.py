"""What the simulation's checks compare: where each message ended in storage, and
what keeps messages or commands from where they must be (empty when nothing does).

Commands and broadcasts are delivered at least once (MQTT QoS 1; and the app
publishes a queued command twice when the device's connect and a new command for
it cross: both publish it while it is still ``pending``), so the checks ask for one
delivery at least and the report counts the repeats."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER, INFERENCE_CONTAINER, TELEMETRY_CONTAINER
from standins.edge import Behaviour

Place = tuple[str, str, int, int | None]  # stream, partition, sequence number, position in an array
IMPLIED = {"succeed": "succeeded", "fail": "failed", "reject": "rejected", "silent": "expired"}
FINAL = set(IMPLIED.values()) | {"cancelled"}


def misplaced(expected: Counter[Place], found: Counter[Place]) -> list[str]:
    """What keeps ``found`` (archive lines and dead letters by origin) from holding
    each message of ``expected`` exactly once."""

    def order(place: Place) -> tuple[str, str, int, int]:
        return place[0], place[1], place[2], -1 if place[3] is None else place[3]

    problems = []
    for what, places in (("missing", set(expected) - set(found)),
                         ("in more than one place", {p for p, n in found.items() if n > 1}),
                         ("never sent", set(found) - set(expected))):
        if places:
            problems.append(f"{len(places)} {what}, e.g. {min(places, key=order)}")
    return problems


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


async def holds_stream_data() -> str | None:
    """The first archive blob or dead letter already in storage (None when there is
    none): a simulation's accounting needs an account no earlier run has written to."""
    for name in (TELEMETRY_CONTAINER, INFERENCE_CONTAINER, DEADLETTER_CONTAINER):
        container = await data_store().container(name)
        async for blob in container.list_blobs():
            return f"{name}/{blob.name}"
    return None


def origin(stream: str, item: dict[str, Any]) -> Place:
    """Where an archive line or dead letter came from: its stream and Event Hubs position."""
    source = item.get("eventHub") or {}
    return stream, str(source.get("partitionId")), int(source.get("sequenceNumber", -1)), source.get("position")


async def places() -> tuple[Counter[Place], dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]]:
    """Where every message is: each archive line and dead letter by its origin."""
    found: Counter[Place] = Counter()
    both = {stream: await stored(stream) for stream in ("telemetry", "inference")}
    for stream, (lines, letters) in both.items():
        found.update(origin(stream, item) for item in (*lines, *letters))
    return found, both


def unexpected(commands: list[dict[str, Any]], behaviours: dict[str, Behaviour],
               received: dict[str, list[str]]) -> list[str]:
    """What keeps ``commands`` from each being in the status its device's behaviour
    implies and having reached its device (``received``: command ids by device) at
    least once: QoS 1 is at least once, and the app may publish a command twice (see
    :func:`repeats`), so a repeat is counted, not a failure."""
    problems = []
    for command in commands:
        device, status = command["deviceId"], command["status"]
        wanted = IMPLIED[behaviours[device]]
        if status != wanted:
            problems.append(f"{device} {command['name']} is {status}, not {wanted}")
        if command["commandId"] not in received.get(device, []):
            problems.append(f"{device} {command['name']} never reached the device")
    return problems


def repeats(received: dict[str, list[str]]) -> int:
    """Deliveries beyond the first of each message (``received``: ids or names by device)."""
    return sum(n - 1 for ids in received.values() for n in Counter(ids).values())


def reach(received: dict[str, list[str]], name: str, addressed: set[str]) -> list[str]:
    """What keeps the message ``name`` (a broadcast, a fleet job's command) from having
    reached each device of ``addressed`` (at least once) and no other device
    (``received``: the names each device received)."""
    problems = []
    missed = sorted(d for d in addressed if name not in received.get(d, []))
    if missed:
        problems.append(f"{name} missed {len(missed)} of the {len(addressed)} devices it addressed, e.g. {missed[0]}")
    strays = sorted(d for d in set(received) - addressed if name in received[d])
    if strays:
        problems.append(f"{name} reached {len(strays)} devices it did not address, e.g. {strays[0]}")
    return problems
