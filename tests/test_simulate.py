"""The fleet simulator, local mode: a short run with every fault on keeps the invariants."""

from __future__ import annotations

import asyncio
import io
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from standins.edge import Behaviour, Inbox
from standins.services import Mosquitto
from tools.simulate.fleet import Faults, Shape, SimDevice, behaviours, message
from tools.simulate.invariants import Place, misplaced, reach, repeats, unexpected
from tools.simulate.progress import Figures, panel, watch
from tools.simulate.report import Report, percentile, reason_kind
from tools.simulate.scenario import QUEUED

ROOT = Path(__file__).resolve().parent.parent
FAULTS = ["--bad", "--spoofed", "--redeliver", "--reorder", "--drop", "--pause-storage", "--pause-broker"]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = tmp_path_factory.mktemp("simulate") / "report.json"
    done = subprocess.run([sys.executable, "-m", "tools.simulate", "--devices", "10", "--duration", "3",
                           "--rate", "4", *FAULTS, "--json", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    return done, orjson.loads(report.read_bytes()) if report.exists() else {}


def test_a_short_simulation_with_every_fault_keeps_every_invariant_and_exits_0(
        simulated: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    done, report = simulated
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Paused 2 service(s) for 2 s." in done.stdout
    assert [c["name"] for c in report["checks"]] == [
        "every message accounted for exactly once", "the registry's connection states equal the simulator's",
        "every command in the status its device's behaviour implies",
        "commands for an offline device waited and went out in order when it connected",
        "a retry with the same Idempotency-Key is the same command",
        "the fleet job reached the devices its attributes select; its counts are their answers",
        "each broadcast reached exactly the devices it addressed", "a command to a disabled client is refused",
        "the app's metrics count every archived message once"]
    assert all(c["ok"] for c in report["checks"]) and report["ok"]
    assert {m["name"] for m in report["metrics"]} >= {"edge.stream.archived", "edge.stream.lag", "edge.command.sent"}
    assert "FAIL" not in done.stdout and "ok   every message accounted for exactly once" in done.stdout


def test_every_fault_happened_and_every_message_is_archived_or_dead_lettered(
        simulated: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    _, report = simulated
    assert report["faults"] == [flag.removeprefix("--") for flag in FAULTS]
    assert report["published"]["bad"] > 0 and report["published"]["spoofed"] > 0
    streams = report["streams"]
    assert sum(s["sent"] for s in streams.values()) == sum(report["published"].values())
    # QoS 1: a message sent again after a lost connection is routed twice, and stored twice.
    assert sum(s["routed"] for s in streams.values()) == \
        sum(s["sent"] for s in streams.values()) + report["brokerDuplicates"]
    for figures in streams.values():
        assert figures["routed"] == figures["archived"] + figures["deadLettered"]
    reasons = streams["telemetry"]["deadLetterReasons"]
    assert sum(reasons.values()) >= report["published"]["bad"] + report["published"]["spoofed"]
    assert reasons["deviceId '…' differs from the device '…' that published on the topic"] >= \
        report["published"]["spoofed"]
    assert report["redeliveries"] > 0 and report["droppedConnections"] == 1
    assert report["lifecycle"]["duplicates"] > 0 and report["lifecycle"]["outOfOrder"] > 0


def test_the_commands_end_as_the_devices_answer_and_the_figures_are_measured(
        simulated: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    _, report = simulated
    # Ten devices, one command per two devices (five): each behaviour is commanded once at least;
    # and three queued for the device that came online late, and one sent twice with one key.
    assert set(report["commands"]) == {"succeeded", "failed", "rejected", "expired"}
    assert sum(report["commands"].values()) == 5 + 3 + 1
    assert report["offlineQueue"] == {"deviceId": "sim-000", "commands": list(QUEUED),
                                      "statusWhenSent": ["pending"] * 3, "received": list(QUEUED)}
    assert report["idempotentRetry"]["statuses"] == [202, 200] and report["idempotentRetry"]["sameCommand"]
    job = report["fleetJob"]
    assert (job["target"], job["total"], sum(job["counts"].values())) == ({"attributes": {"group": "line-a"}}, 5, 5)
    assert report["broadcasts"] == 2 and report["broadcastReach"] == {
        "maintenance-window": {"to": "group line-a", "addressed": 5, "received": 5},
        "shift-change": {"to": "the fleet", "addressed": 10, "received": 10}}
    assert report["disabledClient"]["status"] == 409
    latency = report["latencyMs"]
    assert 0 < latency["p50"] <= latency["p95"] < 10_000
    assert report["throughputPerSecond"] > 0


def test_a_failed_check_fails_the_report_and_is_printed_with_its_problems() -> None:
    report = Report(devices=1, rate=1, duration=1, faults=[], behaviours={"succeed": 1})
    report.check("every message accounted for exactly once", [])
    assert report.ok
    report.check("the registry's connection states equal the simulator's", ["1 devices differ (online), e.g. a"])
    assert not report.ok and not report.to_json()["ok"]
    assert "FAIL the registry's connection states equal the simulator's: 1 devices differ" in report.text()


def test_reasons_are_counted_without_their_particulars_and_percentiles_by_nearest_rank() -> None:
    assert reason_kind("deviceId 'a' differs from the device 'b' that published on the topic; rejected") == \
        reason_kind("deviceId 'c' differs from the device 'd' that published on the topic; rejected as spoofed")
    assert reason_kind("CloudEvent data string holds NaN or Infinity at character 68; JSON numbers") == \
        "CloudEvent data string holds NaN or Infinity"
    assert percentile([], 50) is None
    assert (percentile([4.0, 1.0, 3.0, 2.0], 50), percentile([float(n) for n in range(1, 101)], 95)) == (2.0, 95.0)


def test_every_behaviour_with_a_share_is_given_to_a_device_when_there_are_devices_enough() -> None:
    assigned = behaviours(6, {"succeed": 0.9, "fail": 0.1, "reject": 0, "silent": 0.0001}, random.Random(1))
    assert len(assigned) == 6 and {"succeed", "fail", "silent"} <= set(assigned) and "reject" not in assigned
    assert behaviours(2, {"succeed": 1, "fail": 1, "reject": 1, "silent": 1}, random.Random(1)) == ["succeed", "fail"]


def test_the_payload_shape_sets_the_inference_share_exactly_the_metrics_and_the_most_detections() -> None:
    rng = random.Random(1)
    device = SimDevice("sim-000", "mqtt://127.0.0.1:1")
    for share in (0.0, 0.25, 1 / 3, 0.5, 1.0):
        shape = Shape(inference_share=share, metrics=5, detections=1)
        kinds = [message(device, 0, n, Faults(), [], rng, shape)[0].rsplit("/", 1)[1] for n in range(120)]
        assert kinds.count("inference") == round(120 * share), share
        for topic, payload, _ in (message(device, 0, n, Faults(), [], rng, shape) for n in range(12)):
            body = orjson.loads(payload)
            if topic.endswith("/telemetry"):
                assert list(body["metrics"]) == ["cpuTemp", "fps", "m3", "m4", "m5"]
            else:
                assert len(body["detections"]) <= 1
    assert list(Shape(metrics=1).metric_values(rng)) == ["cpuTemp"]


def test_the_payload_flags_are_checked() -> None:
    for argv, message_ in ((["--inference-share", "1.5"], "1.5 is not between 0 and 1"),
                           (["--metrics", "0"], "0 is not above 0"), (["--detections", "-1"], "-1 is below 0")):
        done = subprocess.run([sys.executable, "-m", "tools.simulate", *argv], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 2 and message_ in done.stderr, (argv, done.stderr)


def test_the_help_names_every_fault_flag() -> None:
    done = subprocess.run([sys.executable, "-m", "tools.simulate", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    assert all(flag in done.stdout for flag in FAULTS)


def test_a_pause_of_a_service_the_simulator_did_not_start_is_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "tools.simulate", "--broker", "mqtt://127.0.0.1:1", "--pause-broker"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--pause-broker pauses the Mosquitto the simulator starts" in done.stderr


def test_storage_an_earlier_run_wrote_to_is_refused_before_anything_runs() -> None:
    """Its archive lines would sit at this run's partition positions and be counted as
    this run's: the simulator needs an account of its own."""
    from azure.storage.blob import BlobServiceClient

    from standins.services import run_azurite

    with run_azurite() as azurite:
        with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
            blobs.create_container("telemetry").upload_blob("0/00000000000000000001.jsonl", b"{}\n")
        done = subprocess.run([sys.executable, "-m", "tools.simulate", "--storage", azurite.connection_string,
                               "--devices", "2", "--duration", "1"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "the storage is not empty (telemetry/0/00000000000000000001.jsonl)" in done.stderr
    assert "Traceback" not in done.stderr and "devices online" not in done.stdout


def test_the_commands_check_names_a_command_in_another_status_and_one_never_delivered_and_counts_repeats(
        ) -> None:
    commands: list[dict[str, Any]] = [
        {"deviceId": "cam", "name": "a", "commandId": "1", "status": "succeeded"},
        {"deviceId": "quiet", "name": "b", "commandId": "2", "status": "sent"},
        {"deviceId": "cam", "name": "c", "commandId": "3", "status": "succeeded"}]
    behaviours: dict[str, Behaviour] = {"cam": "succeed", "quiet": "silent"}
    assert unexpected(commands[:1], behaviours, {"cam": ["1"]}) == []
    # QoS 1 is at least once: a repeat is no failure, it is counted.
    assert unexpected(commands, behaviours, {"cam": ["1", "3", "3"], "quiet": ["2"]}) == [
        "quiet b is sent, not expired"]
    assert repeats({"cam": ["1", "3", "3", "3"], "quiet": ["2"]}) == 2 and repeats({"cam": ["1", "3"]}) == 0
    assert unexpected(commands[1:2], behaviours, {}) == [
        "quiet b is sent, not expired", "quiet b never reached the device"]


def test_the_messages_check_names_a_message_missing_one_kept_twice_and_one_never_sent() -> None:
    array: list[Place] = [("telemetry", "0", 2, 0), ("telemetry", "0", 2, 1)]
    expected: Counter[Place] = Counter([("telemetry", "0", 1, None), *array])
    assert misplaced(expected, expected.copy()) == []
    # Message 1 archived twice, the array dead-lettered whole (not by element), and a stranger.
    found: Counter[Place] = Counter({("telemetry", "0", 1, None): 2, ("telemetry", "0", 2, None): 1,
                                     ("inference", "1", 5, None): 1})
    assert misplaced(expected, found) == [
        "2 missing, e.g. ('telemetry', '0', 2, 0)",
        "1 in more than one place, e.g. ('telemetry', '0', 1, None)",
        "2 never sent, e.g. ('inference', '1', 5, None)",
    ]


def test_the_reach_check_names_a_device_addressed_but_missed_and_one_not_addressed_but_reached() -> None:
    received = {"a": ["group-news"], "b": ["group-news", "group-news"], "c": ["group-news"], "d": []}
    assert reach({"a": ["x"], "b": []}, "x", {"a"}) == []
    assert reach(received, "group-news", {"a", "b", "d"}) == [
        "group-news missed 1 of the 3 devices it addressed, e.g. d",
        "group-news reached 1 devices it did not address, e.g. c"]
    assert reach({}, "x", {"gone"}) == ["x missed 1 of the 1 devices it addressed, e.g. gone"]


FIGURES = Figures(elapsed=3.4, online=19, devices=20, published=412, routed=400, stored=388, dead_lettered=37,
                  responses=9, lifecycle_events=61, commands={"sent": 2, "succeeded": 7})


def test_the_live_panel_shows_every_figure_of_the_progress() -> None:
    console = Console(record=True, force_terminal=True, width=60)
    console.print(panel(FIGURES))
    text = console.export_text()
    for label, value in [("Devices online", "19/20"), ("Published", "412"), ("Routed", "400"), ("Stored", "388"),
                         ("Dead-lettered", "37"), ("Command responses", "9"), ("Life cycle events", "61"),
                         ("Commands sent", "2"), ("Commands succeeded", "7")]:
        assert any(label in line and line.rstrip(" │").endswith(value) for line in text.splitlines()), (label, text)
    assert "Simulated fleet" in text and "3 s" in text


def test_progress_is_a_live_panel_on_a_terminal_and_a_plain_line_elsewhere(capsys: pytest.CaptureFixture[str]
                                                                           ) -> None:
    async def shown(live: bool, console: Console | None = None) -> int:
        stop, calls = asyncio.Event(), []

        async def sample() -> Figures:
            calls.append(1)
            if len(calls) == 2:
                stop.set()
            return FIGURES

        await watch(sample, stop, live=live, console=console)
        return len(calls)

    console = Console(record=True, force_terminal=True, width=80, file=io.StringIO())
    assert asyncio.run(shown(True, console)) >= 2
    drawn = console.export_text()
    assert "Published" in drawn and "412" in drawn and "Devices online" in drawn
    assert capsys.readouterr().out == "", "the live view draws on its console only"
    samples = asyncio.run(shown(False))
    assert capsys.readouterr().out == samples * (
        "    3.4 s: published 412, routed 400, stored 388, dead-lettered 37, responses 9, life cycle events 61, "
        "online 19/20; commands: sent 2, succeeded 7\n")


def test_a_cut_connection_sends_no_disconnect_and_the_client_reconnects_by_itself_to_its_session(
        mosquitto: Mosquitto) -> None:
    device = SimDevice(f"cut-{uuid.uuid4().hex[:6]}", mosquitto.url)
    # The broker publishes a will only when a connection ends without DISCONNECT.
    device._client.will_set(f"wills/{device.device_id}", b"gone", qos=1)
    wills = Inbox(mosquitto.url, ["wills/#"], client_id=f"wills-{device.device_id}")  # and the operator's client
    try:
        device.connect()
        device.cut()
        assert not device.online
        device.reconnected()
        assert device.online
        deadline = time.monotonic() + 10
        while not len(wills) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [topic for topic, _ in wills.take()] == [f"wills/{device.device_id}"]
        # Its subscriptions were kept by the broker: a command reaches it without a new SUBSCRIBE.
        wills._client.publish(f"devices/{device.device_id}/commands/ping", b'{"name": "ping"}', qos=1)
        assert [r.payload["name"] for r in device.wait_for(1)] == ["ping"]
    finally:
        device.disconnect()
        wills.close()
