"""``make demo``: the whole day runs green against a fresh Azurite and Mosquitto,
and its checks (every message sent is in exactly one place; every command is in the
status its device's behaviour implies) are real checks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tools.demo import Place, misplaced
from tools.demo_commands import BEHAVIOURS, IMPLIED, QUEUED, unexpected
from tools.edge import Behaviour

ROOT = Path(__file__).resolve().parents[1]


def numbers(pattern: str, text: str) -> list[int]:
    found = re.search(pattern, text, re.MULTILINE)
    assert found is not None, f"{pattern!r} is not in the demo's output:\n{text}"
    return [int(group) for group in found.groups()]


@pytest.fixture(scope="module")
def demo() -> str:
    """The demo's output, run once; it must exit 0."""
    # A clean environment: the demo runs on its embedded defaults, not on the test session's settings.
    env = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "TMPDIR", "LANG")}
    done = subprocess.run([sys.executable, "-m", "tools.demo"], cwd=ROOT, env=env | {"PYTHONIOENCODING": "utf-8"},
                          capture_output=True, text=True, encoding="utf-8", timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_demo_runs_green_and_accounts_for_every_message_it_streams(demo: str) -> None:
    out = demo
    assert "Registry (6 devices), GET /api/devices:" in out, "the life cycle part still runs first"
    partitions = dict(re.findall(r"^  partition (\d): (.+)$", out, re.MULTILINE))
    assert sorted(partitions) == ["0", "1"] and all(partitions.values()), "both partitions of a hub carry devices"
    for stream in ("telemetry", "inference"):
        _, messages, archived, dead = numbers(rf"^  {stream}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", out)
        assert messages == archived + dead and dead >= 1, stream
    lines_before, lines_after, letters_before, letters_after = numbers(
        r"archive lines (\d+) before, (\d+) after; dead letters (\d+) before, (\d+) after", out)
    assert (lines_before, letters_before) == (lines_after, letters_after), "the replay archived nothing twice"
    sent, archived, dead = numbers(r"(\d+) sent = (\d+) archive lines \+ (\d+) dead letters", out)
    assert sent == archived + dead
    streamed = out.split("Alerts raised by the streams", 1)[1].split("\n\n", 1)[0]
    assert sorted(re.findall(r"(cpuTempHigh|fireDetected) +(?:telemetry|inference)", streamed)) == [
        "cpuTempHigh", "fireDetected"], "one alert for the storm and one for the fire"


def test_the_demo_commands_its_fleet_and_every_command_ends_as_its_device_answers(demo: str) -> None:
    out = demo
    part = out.split("Cloud-to-edge commands", 1)[1]
    table = part.split("Every command, GET", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^  (\S+) +(\S+) +(pending|sent|succeeded|failed|rejected|expired|cancelled) +(\S+)", table,
                      re.MULTILINE)
    assert rows and {device for device, *_ in rows} == set(BEHAVIOURS), "every commandable device was commanded"
    assert all(status == IMPLIED[BEHAVIOURS[device]] for device, _, status, _ in rows), rows
    assert {issuer for *_, issuer in rows} == {"ana@contoso.com", "function-key"}
    assert [name for device, name, *_ in rows if device == "camera-018"][:len(QUEUED)] == list(QUEUED)
    assert f"Received in this order: {', '.join(QUEUED)}" in part, "the queue went out in order"
    first, again = re.findall(r"Idempotency-Key \(\S+\): 202 command (\S+), then 200 command (\S+)\.", part)[0]
    assert first == again
    assert re.search(r'counts \{"sent":2\};\n  after the answers, .*counts \{"succeeded":1,"failed":1\}', part)
    received = dict(re.findall(r"^    (\S+) +group \S+ +(.+)$", part, re.MULTILINE))
    both = "maintenance-window, shift-change"
    assert received == {"camera-017": both, "camera-018": both, "gateway-west": "shift-change",
                        "sensor-ü-7": "shift-change"}, "the group's broadcast reached its members only"
    assert "409 device 'plc-line2-04' is disabled" in part and "FAILED" not in out


def test_the_commands_check_names_a_command_in_another_status_and_one_delivered_twice() -> None:
    commands: list[dict[str, Any]] = [
        {"deviceId": "cam", "name": "a", "commandId": "1", "status": "succeeded"},
        {"deviceId": "quiet", "name": "b", "commandId": "2", "status": "sent"},
        {"deviceId": "cam", "name": "c", "commandId": "3", "status": "succeeded"}]
    behaviours: dict[str, Behaviour] = {"cam": "succeed", "quiet": "silent"}
    assert unexpected(commands[:1], behaviours, {"cam": ["1"]}) == []
    assert unexpected(commands, behaviours, {"cam": ["1", "3", "3"], "quiet": ["2"]}) == [
        "quiet b is sent, not expired", "cam c reached the device 2 times, not once"]
    assert unexpected(commands[1:2], behaviours, {}) == [
        "quiet b is sent, not expired", "quiet b reached the device 0 times, not once"]


def test_the_check_names_a_message_missing_one_kept_twice_and_one_never_sent() -> None:
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
