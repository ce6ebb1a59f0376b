"""One local simulation: services, the app's API server, the fleet, the stand-in, the
operator's requests over HTTP, then the report and its checks."""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER
from shared.platform.timestamps import format_timestamp
from standins.edge import Behaviour
from tools.simulate import scenario
from tools.simulate.fleet import SimDevice, behaviours
from tools.simulate.invariants import FINAL, Place, holds_stream_data, misplaced, places, repeats, unexpected
from tools.simulate.operator import (
    BROADCAST,
    COMMAND_TIMEOUT_SECONDS,
    GROUPS,
    OPERATOR,
    Api,
    Options,
    publish,
    send_broadcast,
    send_commands,
)
from tools.simulate.progress import Figures, watch
from tools.simulate.report import Report, latency_summary, reason_kind
from tools.simulate.stand_in import StandIn

SETTLE_SECONDS = 20  # at most, for the last messages and the commands' answers
PAUSE_SECONDS = 2.0  # --pause-storage, --pause-broker


def _log(line: str) -> None:
    print(line, flush=True)


async def simulate(options: Options, *, server_url: str, key: str | None, broker_url: str,
                   pids: dict[str, int] | None = None) -> Report:
    """The simulation against the served app; the report with its checks."""
    rng = random.Random(options.seed)
    headers = OPERATOR | ({"x-functions-key": key} if key else {})
    stand_in = StandIn(broker_url, rng=rng, redeliver=options.redeliver, reorder=options.reorder)
    fleet: list[SimDevice] = []
    assigned = behaviours(options.devices, options.shares, rng)
    report = Report(devices=options.devices, rate=options.rate, duration=options.duration, faults=options.faults,
                    behaviours=dict(Counter(assigned)))
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            api = Api(session, server_url)
            await _require_empty(api)
            await _run(options, api, broker_url, stand_in, fleet, assigned, rng, report, pids or {})
    finally:
        for device in fleet:
            if device.online:
                device.disconnect()
        stand_in.close()
    return report


class StorageInUse(RuntimeError):
    """The storage holds an earlier run's data, which the checks would count as this one's."""


async def _require_empty(api: Api) -> None:
    """Refuse storage that an earlier run (or anything else) wrote to: its archive lines
    would sit at this run's partition positions and its devices in this run's registry,
    and the checks would count them."""
    found = await holds_stream_data()
    status, page = await api.call("GET", "devices", params={"limit": "1"})
    if found is None and status == 200 and page["items"]:
        found = f"device {page['items'][0]['deviceId']!r} in the registry"
    if found is not None:
        raise StorageInUse(f"the storage is not empty ({found}): a simulation needs an account of its own, as the "
                           "default in-memory Azurite is")


@dataclass(frozen=True)
class _Traffic:
    """What the busy part of a run leaves for the figures and the checks."""

    made: list[dict[str, Any]]  # every command made, the queued ones first
    settled: list[dict[str, Any]]  # the same commands as the API had them once settled
    retry: scenario.Outcome
    jobbed: scenario.Outcome


@dataclass(frozen=True)
class _Ending:
    """What the fleet's end showed: connection states by device (the simulator's, then the
    registry's before and after the fleet disconnected), broadcast reach, the refusal."""

    online: dict[str, bool]
    registry_online: dict[str, bool]
    registry_offline: dict[str, bool]
    reached: scenario.Outcome
    refused: scenario.Outcome


async def _run(options: Options, api: Api, broker_url: str, stand_in: StandIn, fleet: list[SimDevice],
               assigned: list[Behaviour], rng: random.Random, report: Report, pids: dict[str, int]) -> None:
    """The run's phases in order; each leaves what the later ones need."""
    start = datetime.now(UTC)
    await _register(broker_url, stand_in, fleet, assigned)
    queued = await _bring_online(options, api, stand_in, fleet, report)
    traffic = await _traffic(options, api, stand_in, fleet, rng, report, pids, queued)
    await _drain(options, stand_in)
    ending = await _wind_down(api, stand_in, fleet)
    found = await _measure(api, stand_in, fleet, report, traffic, ending, start)
    _check(report, stand_in, fleet, found, queued, traffic, ending)


async def _register(broker_url: str, stand_in: StandIn, fleet: list[SimDevice], assigned: list[Behaviour]) -> None:
    """Each device made and registered as a client, before any connects."""
    for index, behaviour in enumerate(assigned):
        device = SimDevice(f"sim-{index:03d}", broker_url, behaviour=behaviour,
                           group=GROUPS[index % len(GROUPS)])
        fleet.append(device)
        stand_in.created(device.device_id, _attributes(device))
    await stand_in.flush()


async def _bring_online(options: Options, api: Api, stand_in: StandIn, fleet: list[SimDevice],
                        report: Report) -> scenario.Outcome:
    """The fleet connects but for one device, whose commands are queued before it does."""
    # One device comes online late: the commands for it wait until it connects.
    late = next((d for d in fleet if d.behaviour != "silent"), fleet[0])
    for device in fleet:  # the client connects and subscribes; then the broker reports the session
        if device is not late:
            await _connect(device, stand_in)
    await stand_in.flush()
    queued = await scenario.offline_queue(
        api, late, lambda: _connect(late, stand_in, flush=True),
        COMMAND_TIMEOUT_SECONDS if late.behaviour == "silent" else scenario.QUEUE_TIMEOUT_SECONDS)
    report.queued = queued.facts
    _log(f"{len(fleet)} devices online ({', '.join(f'{n} {b}' for b, n in report.behaviours.items())}; "
         f"{late.device_id} was offline while {len(scenario.QUEUED)} commands for it were queued); "
         f"publishing {options.rate:g} messages/s each for {options.duration:g} s; faults: "
         f"{', '.join(options.faults) or 'none'}.")
    return queued


async def _traffic(options: Options, api: Api, stand_in: StandIn, fleet: list[SimDevice], rng: random.Random,
                   report: Report, pids: dict[str, int], queued: scenario.Outcome) -> _Traffic:
    """The fleet publishes through the faults while the operator sends commands, a fleet
    job and broadcasts; then the messages and commands settle. The stand-in delivers and
    the progress shows throughout."""
    stop = asyncio.Event()
    made: list[dict[str, Any]] = list(queued.commands)
    statuses: dict[str, str] = {}
    flusher = asyncio.create_task(stand_in.run(stop))
    began = time.monotonic()
    progress = asyncio.create_task(watch(lambda: _figures(began, fleet, stand_in, api, made, statuses), stop))
    publishing = asyncio.create_task(publish(options, fleet, rng))
    try:
        await _cut_and_pause(options, stand_in, fleet, rng, report, pids, began)
        await asyncio.sleep(max(0.0, began + options.duration * 0.4 - time.monotonic()))
        made += await send_commands(options, api, fleet)
        retry = await scenario.idempotent_retry(api, fleet[-1].device_id, COMMAND_TIMEOUT_SECONDS)
        made += retry.commands
        job = await scenario.fleet_job(api, GROUPS[0], COMMAND_TIMEOUT_SECONDS)
        report.broadcasts = await send_broadcast(api)
        await scenario.group_broadcast(api, GROUPS[0])
        report.broadcasts += 1
        tally = await publishing
        report.published = dict(tally.kinds)
        settled = await _settle(api, stand_in, fleet, made, tally.total)
        jobbed = await scenario.job_outcome(api, job, fleet, GROUPS[0], time.monotonic() + SETTLE_SECONDS)
    finally:
        stop.set()
        await asyncio.gather(flusher, progress)
    return _Traffic(made, settled, retry, jobbed)


async def _cut_and_pause(options: Options, stand_in: StandIn, fleet: list[SimDevice], rng: random.Random,
                         report: Report, pids: dict[str, int], began: float) -> None:
    """The faults that strike while the fleet publishes: --drop at a fifth of the run,
    --pause-storage and --pause-broker at three tenths."""
    if options.drop:
        await asyncio.sleep(options.duration * 0.2)
        report.dropped = await _drop(fleet, stand_in, rng)
    paused = [pids[name] for name, wanted in (("storage", options.pause_storage),
                                              ("broker", options.pause_broker)) if wanted]
    if paused:
        await asyncio.sleep(max(0.0, began + options.duration * 0.3 - time.monotonic()))
        await _pause(paused)


async def _drain(options: Options, stand_in: StandIn) -> None:
    """What the stand-in still holds is delivered, and with --redeliver handed out again."""
    await stand_in.flush()
    if options.redeliver:  # a new instance is handed an overlapping half of the busiest partition again
        busiest = max((log for (s, _), log in stand_in.partitions.items() if s == "telemetry"),
                      key=lambda log: len(log.log))
        span = len(busiest.log)
        await stand_in.replay(busiest, range(busiest.first_sequence + span // 4,
                                             busiest.first_sequence + 3 * span // 4 + 1))


async def _wind_down(api: Api, stand_in: StandIn, fleet: list[SimDevice]) -> _Ending:
    """Broadcast reach and the registry's connection states while the fleet is online;
    the fleet disconnects and the registry is read again; a disabled client is refused."""
    reached = await scenario.broadcast_reach(fleet, GROUPS[0], str(BROADCAST["name"]))
    online = {d.device_id: d.online for d in fleet}
    registry_online = {d["deviceId"]: d["connected"] for d in await api.pages("devices")}
    for device in fleet:
        device.disconnect()
        stand_in.session_ended(device.device_id)
    await stand_in.flush()
    registry_offline = {d["deviceId"]: d["connected"] for d in await api.pages("devices")}
    disabled = fleet[-1]
    refused = await scenario.refused_when_disabled(
        api, disabled.device_id, lambda: _disable(disabled, stand_in))
    return _Ending(online, registry_online, registry_offline, reached, refused)


async def _measure(api: Api, stand_in: StandIn, fleet: list[SimDevice], report: Report, traffic: _Traffic,
                   ending: _Ending, start: datetime) -> Counter[Place]:
    """The report's figures; where every message is, for the checks."""
    ids = [d.device_id for d in fleet]
    found, both = await places()
    report.streams = {stream: {"sent": sum(1 for d in fleet for (topic, _) in d.sent if topic.endswith(stream)),
                               "routed": stand_in.routed[stream], "archived": len(lines),
                               "deadLettered": len(letters),
                               "deadLetterReasons": dict(Counter(reason_kind(letter["reason"]) for letter in letters))}
                      for stream, (lines, letters) in both.items()}
    report.redeliveries = stand_in.redeliveries
    report.lifecycle = {"events": stand_in.lifecycle_events, "duplicates": stand_in.lifecycle_duplicates,
                        "outOfOrder": stand_in.lifecycle_shuffled}
    report.commands = dict(Counter(c["status"] for c in traffic.settled))
    report.retry, report.fleet_job = traffic.retry.facts, traffic.jobbed.facts
    report.broadcast_reach, report.refused = ending.reached.facts, ending.refused.facts
    # An alert's timestamp is the start of its window: list a day back, the fleet's only.
    alerts = await api.pages("alerts", {"since": format_timestamp(start - timedelta(days=1)), "limit": "1000"})
    report.alerts = dict(Counter(a["rule"] for a in alerts if a["deviceId"] in ids))
    latencies = [1000 * (stand_in.stored_at[key] - at) for d in fleet for key, at in d.sent.items()
                 if key in stand_in.stored_at and not key[0].endswith("/response")]
    report.latency_ms = latency_summary(latencies)
    report.throughput = _throughput(fleet, stand_in)
    return found


def _check(report: Report, stand_in: StandIn, fleet: list[SimDevice], found: Counter[Place],
           queued: scenario.Outcome, traffic: _Traffic, ending: _Ending) -> None:
    """The checks, each with what keeps the run from its promise."""
    # Each message published reached the app (QoS 1: at least once; a client that lost its
    # connection sends its unacknowledged messages again, and the broker routes them again),
    # and each event routed is in exactly one place.
    unrouted = [key for d in fleet for key in d.sent if not key[0].endswith("/response")
                and key not in stand_in.stored_at]
    routed = sum(stand_in.routed[s] for s in ("telemetry", "inference"))
    report.broker_duplicates = routed - sum(1 for topic, _ in stand_in.stored_at if not topic.endswith("/response"))
    report.check("every message accounted for exactly once",
                 misplaced(stand_in.expected, found)
                 + ([f"{len(unrouted)} published never reached the app, e.g. {unrouted[0][0]}"] if unrouted else []))
    report.check("the registry's connection states equal the simulator's",
                 _differences(ending.online, ending.registry_online, "online")
                 + _differences(dict.fromkeys(ending.online, False), ending.registry_offline,
                                "after the fleet disconnected"))
    by_device = {d.device_id: d.behaviour for d in fleet}
    received = {d.device_id: [str(r.payload.get("commandId")) for r in d.commands] for d in fleet}
    report.command_repeats = repeats(received)
    settled, made = traffic.settled, traffic.made
    report.check("every command in the status its device's behaviour implies",
                 unexpected(settled, by_device, received)
                 + ([] if len(settled) == len(made) else [f"{len(settled)} of {len(made)} commands found"]))
    report.check("commands for an offline device waited and went out in order when it connected", queued.problems)
    report.check("a retry with the same Idempotency-Key is the same command", traffic.retry.problems)
    report.check("the fleet job reached the devices its attributes select; its counts are their answers",
                 traffic.jobbed.problems)
    report.check("each broadcast reached exactly the devices it addressed", ending.reached.problems)
    report.check("a command to a disabled client is refused", ending.refused.problems)


def _attributes(device: SimDevice) -> dict[str, Any]:
    return {"type": "camera", "group": device.group}


async def _connect(device: SimDevice, stand_in: StandIn, *, flush: bool = False) -> None:
    """The client connects and subscribes; then the broker reports the session (delivered
    at the next flush, or now)."""
    await asyncio.to_thread(device.connect)
    stand_in.session_started(device.device_id)
    if flush:
        await stand_in.flush()


async def _disable(device: SimDevice, stand_in: StandIn) -> None:
    stand_in.created(device.device_id, _attributes(device), state="Disabled")
    await stand_in.flush()


async def _figures(began: float, fleet: list[SimDevice], stand_in: StandIn, api: Api,
                   commands: list[dict[str, Any]], statuses: dict[str, str]) -> Figures:
    """The progress so far. Dead letters are counted from their blobs (one per message);
    a command's status (kept in ``statuses`` by command id) is asked for until it is final."""
    container = await data_store().container(DEADLETTER_CONTAINER)
    dead = 0
    for stream in ("telemetry", "inference"):
        dead += sum([1 async for _ in container.list_blobs(name_starts_with=f"{stream}/")])
    for command in list(commands):
        if statuses.setdefault(command["commandId"], command["status"]) not in FINAL:
            status, found = await api.command(command["deviceId"], command["commandId"])
            if status == 200:
                statuses[command["commandId"]] = found["status"]
    return Figures(elapsed=time.monotonic() - began, online=sum(d.online for d in fleet), devices=len(fleet),
                   published=sum(len(d.sent) for d in fleet),
                   routed=stand_in.routed["telemetry"] + stand_in.routed["inference"],
                   stored=sum(1 for topic, _ in stand_in.stored_at if not topic.endswith("/response")),
                   dead_lettered=dead, responses=stand_in.routed["command-responses"],
                   lifecycle_events=stand_in.lifecycle_events, commands=dict(Counter(statuses.values())))


def _throughput(fleet: list[SimDevice], stand_in: StandIn) -> float:
    """Stream messages stored per second, from the first publish to the last batch stored."""
    sent = [at for d in fleet for key, at in d.sent.items() if not key[0].endswith("/response")]
    stored = [at for key, at in stand_in.stored_at.items() if not key[0].endswith("/response")]
    if not sent or not stored:
        return 0.0
    return round(len(stored) / max(max(stored) - min(sent), 1e-9), 1)


def _differences(wanted: dict[str, bool], registry: dict[str, bool], when: str) -> list[str]:
    wrong = sorted(d for d, up in wanted.items() if registry.get(d) != up)
    return [f"{len(wrong)} devices differ ({when}), e.g. {wrong[0]}: simulator "
            f"{'connected' if wanted[wrong[0]] else 'offline'}, registry {registry.get(wrong[0])}"] if wrong else []


async def _drop(fleet: list[SimDevice], stand_in: StandIn, rng: random.Random) -> int:
    """A tenth of the devices (one at least) lose their connection (the socket cut, no
    DISCONNECT); the broker reports each session's end at once, and its new one when
    paho has reconnected by itself."""
    dropped = rng.sample(fleet, k=max(1, math.ceil(len(fleet) / 10)))
    for device in dropped:
        device.cut()
        stand_in.session_ended(device.device_id, "ConnectionLost")
    for device in dropped:
        await asyncio.to_thread(device.reconnected)
        stand_in.session_started(device.device_id)
    _log(f"{len(dropped)} devices lost their connection (socket cut) and reconnected.")
    return len(dropped)


async def _pause(pids: list[int]) -> None:
    """The processes stopped (SIGSTOP) for :data:`PAUSE_SECONDS`, then continued."""
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        _log(f"Paused {len(pids)} service(s) for {PAUSE_SECONDS:g} s.")
        await asyncio.sleep(PAUSE_SECONDS)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def _settle(api: Api, stand_in: StandIn, fleet: list[SimDevice], commands: list[dict[str, Any]],
                  published: int) -> list[dict[str, Any]]:
    """Wait until every message published reached the stand-in and every command is in a
    final status (or :data:`SETTLE_SECONDS` passed); the commands as the API returns them."""
    deadline = time.monotonic() + SETTLE_SECONDS
    for _ in range(int(SETTLE_SECONDS / 0.1)):
        if stand_in.received >= published + _answers(fleet):
            break
        await asyncio.sleep(0.1)
    while True:
        found = await api.current(commands)
        if all(c["status"] in FINAL for c in found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.3)


def _answers(fleet: list[SimDevice]) -> int:
    return sum(len(d.commands) for d in fleet if d.behaviour != "silent")
