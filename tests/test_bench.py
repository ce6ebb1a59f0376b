"""``make bench``'s figures measure what they say, in tiny rounds against the session's
Azurite and Mosquitto: the cold request's two sides read the same stored device in fresh
interpreters; the stream, command and connect figures count real storage requests,
archived messages and published commands; the simulator's paths carry their messages
where they say (the broker and the routing stand-in; the Event Hubs producer) and the
baseline straight to the function. Never timing."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from standins.edge import Inbox
from standins.eventhub_factory import hub_partition
from standins.services import Mosquitto
from tools.bench import commands, paths, startup, streams


@pytest.mark.usefixtures("app_env")
def test_the_cold_request_figure_times_both_sides_reading_the_stored_device(
        run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run(startup.store_cold_device())
    monkeypatch.setattr(startup, "REPEATS", 1)
    figures = startup.cold_request_ratio()  # each side asserts it read the device
    assert figures["cold_request_app_ms"] > 0 and figures["cold_request_naive_ms"] > 0
    assert figures["cold_request_ratio"] == pytest.approx(
        figures["cold_request_app_ms"] / figures["cold_request_naive_ms"], rel=0.01)


STREAM_FIGURES = ("telemetry_cpu_ratio", "telemetry_requests_per_1000", "telemetry_speedup_vs_naive",
                  "telemetry_msgs_per_s", "naive_telemetry_msgs_per_s", "telemetry_fleet_msgs_per_s",
                  "telemetry_worker_cpu_us_per_msg", "telemetry_fleet_worker_cpu_us_per_msg", "inference_msgs_per_s",
                  "telemetry_fleet_requests_per_1000", "telemetry_fleet_cpu_ratio", "devices_10k_new_requests_per_msg",
                  "devices_10k_new_cpu_us_per_msg", "devices_10k_known_requests_per_msg",
                  "devices_10k_known_cpu_us_per_msg", "telemetry_fleet_host_batch_cpu_us_per_msg",
                  "flex_cores_for_100k_msgs_per_s")


@pytest.mark.usefixtures("app_env")
def test_a_tiny_round_of_the_stream_figures_runs_and_counts_real_storage_requests(
        run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("CPU_MESSAGES", 200), ("CPU_ROUNDS", 1), ("COUNTED_BATCHES", 2), ("SPEED_MESSAGES", 200),
                        ("SPEED_CHUNKS", 2), ("FLEET_DEVICES", 100), ("MANY_DEVICES", 200)):
        monkeypatch.setattr(streams, name, value)
    figures = run(streams.stream_figures())  # each rate asserts that every message was archived
    for name in STREAM_FIGURES:
        assert isinstance(figures[name], float) and figures[name] > 0, (name, figures)
    assert figures["telemetry_requests_per_1000"] >= 1000 / streams.BATCH, "at least the archive blob of each batch"
    assert figures["log_records_per_1000_messages"] <= 5, "the log-volume budget (docs/capacity.md, Speed)"

    requests = run(streams.counted_telemetry_requests(2))
    blob_writes = [path for method, path in requests.seen if method == "PUT" and "/telemetry/" in path]
    state_writes = [path for method, path in requests.seen if method == "POST" and "/$batch" in path]
    assert len(blob_writes) >= 2, requests.seen
    assert len(state_writes) == 2, "one transaction of the latest state a batch, whatever its devices"



def test_the_log_count_takes_the_apps_records_at_information_and_not_the_workers_own() -> None:
    with streams.app_log_records() as records:
        logging.getLogger("shared.streams.service").info("counted")
        logging.getLogger("azure.core.pipeline").warning("counted too")
        logging.getLogger("azure.functions").info("the worker's own line")
        logging.getLogger("shared.streams.service").debug("below Information")
    assert [r.getMessage() for r in records] == ["counted", "counted too"]


def record_checks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[paths.Message]]]:
    """Tiny rounds of the path figures; the sets of messages each one checks to be
    archived once (prefix, messages), recorded as it checks them."""
    for name, value in (("PATH_MESSAGES", 100), ("PATH_ROUNDS", 2), ("PATH_WARMUP", paths.PATH_DEVICES)):
        monkeypatch.setattr(paths, name, value)
    checked: list[tuple[str, list[paths.Message]]] = []
    check = paths.stored_once

    async def recorded(prefix: str, since: datetime, messages: list[paths.Message]) -> None:
        await check(prefix, since, messages)
        checked.append((prefix, messages))

    monkeypatch.setattr(paths, "stored_once", recorded)
    return checked


def archive_origins(run: Any, prefix: str, since: datetime) -> list[tuple[str, str, str]]:
    """(device, hub, partition) of each archive line of devices ``{prefix}-NNN``."""
    from shared.platform.storage import data_store
    from tools.simulate.stored import read_stored

    stored = run(read_stored(data_store().blob_service, prefix, since))
    return [(line["deviceId"], line["eventHub"]["hub"], line["eventHub"]["partitionId"])
            for line in stored.lines["telemetry"]]


def check_the_direct_baseline(run: Any, checked: list[tuple[str, list[paths.Message]]], since: datetime) -> None:
    """The baseline's messages went straight to the function: a hub of their own, one partition."""
    (_, direct), = [c for c in checked if c[0].startswith("direct")]
    prefix = paths.device_of(direct[0]).rsplit("-", 1)[0]
    origins = archive_origins(run, prefix, since)
    assert len(origins) == len(direct) == paths.PATH_ROUNDS * paths.PATH_MESSAGES
    assert {(hub.startswith("bench-direct-"), partition) for _, hub, partition in origins} == {(True, "0")}


def watching(inbox: Inbox, prefix: str, wanted: int) -> list[paths.Message]:
    """What the broker carried of devices ``{prefix}-NNN`` (waiting a little for ``wanted``)."""
    seen: list[paths.Message] = []
    deadline = time.monotonic() + 10
    while True:
        seen += [m for m in inbox.take() if paths.device_of(m).startswith(f"{prefix}-")]
        if len(seen) >= wanted or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


@dataclass
class PathRound:
    figures: dict[str, float]
    checked: list[tuple[str, list[paths.Message]]]  # each side's messages, as stored_once checked them
    prefix: str  # the path's devices
    path: list[paths.Message]
    carried: list[paths.Message]  # what the broker carried of the path's devices
    since: datetime


def path_round(run: Any, monkeypatch: pytest.MonkeyPatch, mosquitto: Mosquitto,
               figure: Callable[[], Awaitable[dict[str, float]]], names: tuple[str, str, str],
               wanted: int | None) -> PathRound:
    """A tiny round of a path figure while the broker is watched (``wanted`` None: all the
    path's messages); its ``names`` (the path's rate, the direct rate, their ratio) are
    figures, the ratio the rates' quotient."""
    checked = record_checks(monkeypatch)
    since = datetime.now(UTC)
    inbox = Inbox(mosquitto.url, ["devices/+/telemetry"], client_id=f"bench-watch-{uuid.uuid4().hex[:6]}")
    try:
        figures = run(figure())  # asserts each message of both sides archived once
        assert [prefix[:4] for prefix, _ in checked] == ["path", "dire"]
        (prefix, path), = [c for c in checked if c[0].startswith("path")]
        carried = watching(inbox, prefix, len(path) if wanted is None else wanted)
    finally:
        inbox.close()
    for name in names:
        assert isinstance(figures[name], float) and figures[name] > 0, (name, figures)
    path_rate, direct_rate, ratio = names
    assert figures[ratio] == pytest.approx(figures[direct_rate] / figures[path_rate], rel=0.02)
    assert len(path) == paths.PATH_WARMUP + paths.PATH_ROUNDS * paths.PATH_MESSAGES
    return PathRound(figures, checked, prefix, path, carried, since)


@pytest.mark.usefixtures("app_env")
def test_a_tiny_round_of_the_simulator_figure_sends_its_messages_through_the_broker_and_the_routing_stand_in(
        run: Any, monkeypatch: pytest.MonkeyPatch, mosquitto: Mosquitto) -> None:
    done = path_round(run, monkeypatch, mosquitto, paths.simulator_overhead_ratio,
                      ("simulator_msgs_per_s", "simulator_direct_msgs_per_s", "simulator_overhead_ratio"), None)
    # Every message of the path crossed the broker (QoS 1 from its device), once, and
    # reached the function in the routing stand-in's partition of its device.
    assert sorted(done.carried) == sorted(done.path)
    origins = archive_origins(run, done.prefix, done.since)
    assert len(origins) == len(done.path)
    assert all(hub == "telemetry" and partition == hub_partition(device) for device, hub, partition in origins)
    check_the_direct_baseline(run, done.checked, done.since)


@pytest.mark.usefixtures("app_env")
def test_a_tiny_round_of_the_eventhubs_figure_sends_its_messages_with_the_producer_not_over_mqtt(
        run: Any, monkeypatch: pytest.MonkeyPatch, mosquitto: Mosquitto) -> None:
    # the figure ran seconds after its last message was sent: the broker had its chance
    done = path_round(run, monkeypatch, mosquitto, paths.eventhubs_producer_overhead_ratio,
                      ("eventhubs_producer_msgs_per_s", "eventhubs_direct_msgs_per_s",
                       "eventhubs_producer_overhead_ratio"), 0)
    # No MQTT on this path: the producer sent each message to the hub with its device as
    # the partition key, and the Event Hubs stand-in put it in that key's partition.
    assert done.carried == []
    origins = archive_origins(run, done.prefix, done.since)
    assert len(origins) == len(done.path)
    assert all(hub == "telemetry" and partition == hub_partition(device) for device, hub, partition in origins)
    check_the_direct_baseline(run, done.checked, done.since)


@pytest.mark.usefixtures("app_env")
def test_a_connect_with_nothing_pending_makes_the_requests_it_made_before_commands_existed(run: Any) -> None:
    from shared.platform.keys import device_key

    # Before the command feature a connect read the registry row, wrote the connected
    # index row and wrote the registry row back; the pending mark keeps it so.
    device, idle = run(commands.counted_connect(pending=False))
    key = device_key(device)
    assert [(method, path.rsplit("/", 1)[-1]) for method, path in idle.seen] == [
        ("GET", f"devices(PartitionKey='{key}',RowKey='registry')"),
        ("PATCH", f"devices(PartitionKey='~connected',RowKey='c{key}')"),
        ("PUT", f"devices(PartitionKey='{key}',RowKey='registry')"),
    ]
    assert not idle.to("/commands"), "no query of the commands table"

    # The same count sees a device with a pending command: its commands are read.
    _, waiting = run(commands.counted_connect(pending=True))
    assert waiting.to("/commands()") and len(waiting.seen) > len(idle.seen), waiting.seen


COMMAND_FIGURES = ("command_baseline_ms", "command_median_ms", "command_p99_ms", "command_overhead_ratio",
                   "commands_per_s", "lifecycle_connects_per_s_no_pending", "lifecycle_connects_per_s_with_pending",
                   "lifecycle_connect_cpu_us")


@pytest.mark.usefixtures("app_env")
def test_a_tiny_round_of_the_command_figures_runs_against_the_broker_and_the_queue(
        run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.commands.fleet import INLINE_DEVICES

    # A fleet just past the inline part, so that its last commands go through the queue.
    for name, value in (("COMMAND_SENDS", 8), ("COMMAND_CHUNKS", 2), ("CONCURRENT_ROUNDS", 1), ("CONNECTS", 8),
                        ("CONNECT_CHUNKS", 2), ("FLEET_COMMAND_DEVICES", INLINE_DEVICES + 10)):
        monkeypatch.setattr(commands, name, value)
    figures = run(commands.command_figures())  # each part asserts its commands were sent or published
    for name in (*COMMAND_FIGURES, f"fleet_{INLINE_DEVICES + 10}_seconds"):
        assert isinstance(figures[name], float) and figures[name] > 0, (name, figures)
    assert figures["command_p99_ms"] >= figures["command_median_ms"]
    assert figures["command_overhead_ratio"] == pytest.approx(
        figures["command_median_ms"] / figures["command_baseline_ms"], rel=0.02)
    assert figures["connect_requests_no_pending"] == 3
    assert figures["connect_requests_with_pending"] > 3


def test_the_metrics_figures_time_a_batch_s_emission_and_a_first_emission_in_a_fresh_worker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.bench import metrics

    monkeypatch.setattr(metrics, "ROUNDS", 20)
    figures = metrics.metrics_figures({"telemetry_fleet_worker_cpu_us_per_msg": 300.0, "cold_request_app_ms": 200.0})
    assert figures["metrics_us_per_batch"] > 0 and figures["metrics_first_emission_ms"] > 0
    assert figures["metrics_share_of_batch_cpu"] == pytest.approx(figures["metrics_us_per_batch"] / 30_000, abs=1e-4)
    assert figures["metrics_first_emission_to_cold_request_ratio"] == pytest.approx(
        figures["metrics_first_emission_ms"] / 200, rel=0.01)
