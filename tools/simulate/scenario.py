"""The operator's promises a simulation checks besides the steady commands: commands
for an offline device wait (``pending``) and go out in order once it connects; a
retry with the same ``Idempotency-Key`` is the same command (202, then 200); a fleet
job by attribute reaches the devices it selects, and its counts follow their
answers; a broadcast to a group reaches its members only, one to the fleet every
device; a command to a disabled client is refused (409). Each step goes through the
API server over HTTP and returns what it saw (for the report) and what keeps it from
its promise (empty when nothing does)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tools.simulate.fleet import SimDevice
from tools.simulate.invariants import FINAL, IMPLIED, reach
from tools.simulate.operator import Api

QUEUED = ("rotate-logs", "calibrate", "restart-stream")  # in this order, to a device that is offline
QUEUE_TIMEOUT_SECONDS = 60  # a queued command's life: the device connects well before (unless it is silent)
RETRIED: dict[str, Any] = {"name": "snapshot", "payload": {"resolution": "1080p"}}
JOB_NAME = "update-model"
GROUP_BROADCAST_NAME = "maintenance-window"
WAIT_SECONDS = 10  # at most, for a device's commands or broadcasts to arrive


@dataclass
class Outcome:
    """One step: what it saw, for the report, and what keeps it from its promise."""

    facts: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)  # the commands it made, to settle and check


def _commands_path(device_id: str) -> str:
    return f"devices/{quote(device_id, safe='')}/commands"


async def offline_queue(api: Api, device: SimDevice, come_online: Callable[[], Awaitable[None]],
                        timeout_seconds: int) -> Outcome:
    """Commands for ``device`` while it is offline, then it comes online."""
    made = [await api.post(_commands_path(device.device_id), {"name": name, "timeoutSeconds": timeout_seconds})
            for name in QUEUED]
    await come_online()
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        firsts: dict[str, str] = {}  # name by command id, in the order of first arrival (a repeat may follow)
        for received in list(device.commands):
            firsts.setdefault(str(received.payload.get("commandId")), str(received.payload.get("name")))
        if len(firsts) >= len(QUEUED) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    order = list(firsts.values())[:len(QUEUED)]
    problems = [f"{c['name']} was {c['status']} when sent, not pending" for c in made if c["status"] != "pending"]
    if order != list(QUEUED):
        problems.append(f"{device.device_id} received {order}, not {list(QUEUED)}")
    return Outcome({"deviceId": device.device_id, "commands": list(QUEUED),
                    "statusWhenSent": [c["status"] for c in made], "received": order}, problems, made)


async def idempotent_retry(api: Api, device_id: str, timeout_seconds: int) -> Outcome:
    """The same request twice with one ``Idempotency-Key``, as a client retries."""
    key = {"Idempotency-Key": f"snapshot-{uuid.uuid4().hex[:8]}"}
    answers = [await api.call("POST", _commands_path(device_id), RETRIED | {"timeoutSeconds": timeout_seconds},
                              headers=key) for _ in range(2)]
    statuses = [status for status, _ in answers]
    ids = [(body or {}).get("commandId") for _, body in answers]
    problems = [] if statuses == [202, 200] and ids[0] == ids[1] else [
        f"answered {statuses[0]} then {statuses[1]} with commands {ids[0]} and {ids[1]}, not 202 then 200 "
        "with one command"]
    return Outcome({"deviceId": device_id, "statuses": statuses, "sameCommand": ids[0] == ids[1]}, problems,
                   [answers[0][1]] if statuses[0] == 202 else [])


async def fleet_job(api: Api, group: str, timeout_seconds: int) -> dict[str, Any]:
    """A fleet job to the devices whose attribute ``group`` is ``group``; the job as created."""
    body = {"name": JOB_NAME, "payload": {"model": "yolo-v8", "version": "8.2"}, "timeoutSeconds": timeout_seconds,
            "target": {"attributes": {"group": group}}}
    created: dict[str, Any] = await api.post("commands", body)
    return created


async def job_outcome(api: Api, created: dict[str, Any], fleet: list[SimDevice], group: str,
                      deadline: float) -> Outcome:
    """The job once every command of it is final (or ``deadline``, monotonic, passed)."""
    while True:
        status, job = await api.call("GET", f"commands/{created['jobId']}")
        if status != 200:
            raise RuntimeError(f"GET /api/commands/{created['jobId']} answered {status}")
        if (job["fanout"] == "done" and set(job["counts"]) <= FINAL) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    members = [d for d in fleet if d.group == group]
    wanted = dict(Counter(IMPLIED[d.behaviour] for d in members))
    problems = [] if job["total"] == len(members) else [
        f"the job targeted {job['total']} devices, not the {len(members)} of group {group}"]
    if job["counts"] != wanted:
        problems.append(f"its counts are {job['counts']}, not its devices' answers {wanted}")
    received = {d.device_id: [str(r.payload.get("name")) for r in d.commands] for d in fleet}
    problems += reach(received, JOB_NAME, {d.device_id for d in members})
    return Outcome({"name": JOB_NAME, "target": job["target"], "total": job["total"],
                    "countsWhenCreated": created["counts"], "counts": job["counts"]}, problems)


async def group_broadcast(api: Api, group: str) -> None:
    await api.post("broadcasts", {"name": GROUP_BROADCAST_NAME, "payload": {"from": "02:00Z", "until": "03:00Z"},
                                    "ttlSeconds": 600, "group": group})


async def broadcast_reach(fleet: list[SimDevice], group: str, fleet_broadcast: str) -> Outcome:
    """Who received the group's broadcast and the fleet's, once each device has what it
    should (or :data:`WAIT_SECONDS` passed)."""
    members = {d.device_id for d in fleet if d.group == group}
    addressed = {GROUP_BROADCAST_NAME: members, fleet_broadcast: {d.device_id for d in fleet}}
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        received = {d.device_id: [str(b.payload.get("name")) for b in list(d.broadcasts)] for d in fleet}
        if all(name in received[d] for name, devices in addressed.items() for d in devices) \
                or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    reached = {name: sum(1 for names in received.values() if name in names) for name in addressed}
    facts = {name: {"to": f"group {group}" if name == GROUP_BROADCAST_NAME else "the fleet",
                    "addressed": len(devices), "received": reached[name]} for name, devices in addressed.items()}
    return Outcome(facts, [p for name, devices in addressed.items() for p in reach(received, name, devices)])


async def refused_when_disabled(api: Api, device_id: str, disable: Callable[[], Awaitable[None]]) -> Outcome:
    """The operator disables the client (its life cycle event reaches the app); then a command to it."""
    await disable()
    status, body = await api.call("POST", _commands_path(device_id), {"name": "reboot"})
    problems = [] if status == 409 else [f"a command to the disabled {device_id} was answered {status}, not 409"]
    return Outcome({"deviceId": device_id, "status": status, "detail": (body or {}).get("detail")}, problems)
