"""What the simulation's checks compare: where each message ended in storage, and
what keeps messages or commands from where they must be (empty when nothing does)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER, INFERENCE_CONTAINER, TELEMETRY_CONTAINER
from tools.edge import Behaviour

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


async def places() -> tuple[Counter[Place], dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]]:
    """Where every message is: each archive line and dead letter by its origin."""
    found: Counter[Place] = Counter()
    both = {stream: await stored(stream) for stream in ("telemetry", "inference")}
    for stream, (lines, letters) in both.items():
        for item in (*lines, *letters):
            origin = item["eventHub"]
            found[(stream, origin["partitionId"], origin["sequenceNumber"], origin.get("position"))] += 1
    return found, both


def unexpected(commands: list[dict[str, Any]], behaviours: dict[str, Behaviour],
               received: dict[str, list[str]]) -> list[str]:
    """What keeps ``commands`` from each being in the status its device's behaviour
    implies and having reached its device (``received``: command ids by device)
    exactly once."""
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


def reach(received: dict[str, list[str]], name: str, addressed: set[str]) -> list[str]:
    """What keeps the message ``name`` (a broadcast, a fleet job's command) from having
    reached each device of ``addressed`` exactly once and no other device
    (``received``: the names each device received)."""
    problems = []
    for wanted, devices in ((1, addressed), (0, set(received) - addressed)):
        wrong = sorted(d for d in devices if received.get(d, []).count(name) != wanted)
        if wrong:
            problems.append(f"{name} reached {len(wrong)} devices {received.get(wrong[0], []).count(name)} times, "
                            f"not {wanted}, e.g. {wrong[0]}")
    return problems
