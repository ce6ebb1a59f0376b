"""The fleet simulator, local mode: a short run with every fault on keeps the invariants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tools.simulate.fleet import behaviours
from tools.simulate.report import Report, percentile, reason_kind

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
        "every command in the status its device's behaviour implies", "the broadcast reached every device"]
    assert all(c["ok"] for c in report["checks"]) and report["ok"]
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
    # Ten devices, one command per two devices (five): each behaviour is commanded once at least.
    assert set(report["commands"]) == {"succeeded", "failed", "rejected", "expired"}
    assert sum(report["commands"].values()) == 5
    assert report["broadcasts"] == 1
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
    import random

    assigned = behaviours(6, {"succeed": 0.9, "fail": 0.1, "reject": 0, "silent": 0.0001}, random.Random(1))
    assert len(assigned) == 6 and {"succeed", "fail", "silent"} <= set(assigned) and "reject" not in assigned
    assert behaviours(2, {"succeed": 1, "fail": 1, "reject": 1, "silent": 1}, random.Random(1)) == ["succeed", "fail"]


def test_the_help_names_every_fault_flag() -> None:
    done = subprocess.run([sys.executable, "-m", "tools.simulate", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    assert all(flag in done.stdout for flag in FAULTS)


def test_a_pause_of_a_service_the_simulator_did_not_start_is_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "tools.simulate", "--broker", "mqtt://127.0.0.1:1", "--pause-broker"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--pause-broker pauses the Mosquitto the simulator starts" in done.stderr
