"""``make demo``: the simulator's preset runs green against a fresh Azurite and
Mosquitto, its report shows every request of the operator the simulator checks, and
the curl lines it ends with answer with the demo's fleet while ``make serve`` serves
the data it kept."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.harness import command_line, read_until
from tools.simulate.scenario import QUEUED

ROOT = Path(__file__).resolve().parents[1]
FLEET = {f"sim-{n:03d}" for n in range(20)}
CHECKS = ["every message accounted for exactly once", "the registry's connection states equal the simulator's",
          "every command in the status its device's behaviour implies",
          "commands for an offline device waited and went out in order when it connected",
          "a retry with the same Idempotency-Key is the same command",
          "the fleet job reached the devices its attributes select; its counts are their answers",
          "each broadcast reached exactly the devices it addressed", "a command to a disabled client is refused",
          "the app's metrics count every archived message once"]


def clean_env() -> dict[str, str]:
    """The demo runs on its embedded defaults, not on the test session's settings."""
    env = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "TMPDIR", "LANG")}
    return env | {"PYTHONIOENCODING": "utf-8"}


def numbers(pattern: str, text: str) -> list[int]:
    found = re.search(pattern, text, re.MULTILINE)
    assert found is not None, f"{pattern!r} is not in the demo's output:\n{text}"
    return [int(group) for group in found.groups()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """``make demo``'s entry point run once, its data in a folder of its own; it must exit 0."""
    data = tmp_path_factory.mktemp("demo")
    done = subprocess.run([sys.executable, "-m", "tools.demo", "--data", str(data)], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, encoding="utf-8", timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, data


def test_the_demo_is_the_simulator_with_its_preset_and_every_check_passes(demo: tuple[str, Path]) -> None:
    out, data = demo
    assert "python -m tools.simulate --devices 20 --duration 8" in out
    assert f"Azurite (its data kept in {data / 'azurite'})" in out
    key = (data / "key").read_text().strip()
    assert f"(x-functions-key: {key})" in out, "the API server takes the key make serve will take"
    assert re.findall(r"^  (ok  |FAIL) (.+)$", out, re.MULTILINE) == [("ok  ", name) for name in CHECKS]
    assert "Devices: 20 (" in out and "faults: bad, spoofed, redeliver, reorder, drop" in out
    for stream in ("telemetry", "inference"):
        sent, routed, archived, dead = numbers(rf"^  {stream}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out)
        assert sent > 0 and routed == archived + dead, stream
    assert numbers(r"^  telemetry\s+\d+\s+\d+\s+\d+\s+(\d+)", out)[0] > 0, "the bad and spoofed ones"


def test_the_report_shows_the_queue_the_retry_the_job_the_broadcasts_and_the_refusal(demo: tuple[str, Path]) -> None:
    out, _ = demo
    assert (f"Offline device sim-000: 3 commands queued (pending), received once it connected: "
            f"{', '.join(QUEUED)}") in out
    assert re.search(r"^Retry with the same Idempotency-Key to sim-\d+: 202 then 200, the same command$", out,
                     re.MULTILINE)
    job = re.search(r'^Fleet job update-model to \{"attributes":\{"group":"line-a"\}\}: 10 devices, counts '
                    r'\{"sent":10\} when created, (\{.*\}) at the end$', out, re.MULTILINE)
    assert job is not None, out
    counts = orjson.loads(job.group(1))
    assert sum(counts.values()) == 10 and set(counts) <= {"succeeded", "failed", "rejected", "expired"}
    assert ("Broadcasts: 2; maintenance-window to group line-a: received by 10 of 10 devices; "
            "shift-change to the fleet: received by 20 of 20 devices") in out
    assert re.search(r"^Disabled client (sim-\d+): a command answered 409 \(device '\1' is disabled\)$", out,
                     re.MULTILINE)


def curl_lines(out: str) -> list[str]:
    return [line.strip() for line in out.split("then paste:", 1)[1].splitlines() if line.strip()]


def request(key_line: str, line: str, key: str) -> tuple[int, Any]:
    """One printed curl line after the printed ``KEY=`` line: run by curl through the
    shell when there is one, or read as curl would and sent with urllib."""
    if shutil.which("curl"):
        done = subprocess.run(["bash", "-c", f'{key_line}; {line} -w "\\n%{{http_code}}"'],
                              capture_output=True, text=True, timeout=30, check=True)
        body, _, status = done.stdout.rpartition("\n")
        return int(status), orjson.loads(body)
    words = shlex.split(line.replace("$KEY", key))
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    data = next((words[i + 1].encode() for i, w in enumerate(words) if w == "-d"), None)
    try:
        with urllib.request.urlopen(urllib.request.Request(words[-1], data=data, headers=headers)) as answer:
            return answer.status, orjson.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read() or b"null")


def test_the_curl_lines_answer_with_the_demos_fleet_while_serve_serves_its_data(demo: tuple[str, Path]) -> None:
    out, data = demo
    lines = curl_lines(out)
    assert lines[0] == f"KEY=$(cat {shlex.quote(str(data / 'key'))})" and len(lines) == 7, lines
    key = subprocess.run(["bash", "-c", f"{lines[0]}; echo $KEY"], capture_output=True, text=True,
                         check=True).stdout.strip()
    with command_line("--port", "0", "--data", str(data)) as (process, banner):
        seen: list[str] = []
        assert f"with the data of the last make demo ({data / 'azurite'})" in read_until(banner, "Azurite", seen)
        url = read_until(banner, "Listening on ", seen).removeprefix("Listening on ")
        assert read_until(banner, "x-functions-key: ", seen) == f"x-functions-key: {key}", "the demo's key"
        answers = [request(lines[0], line.replace("http://127.0.0.1:7071", url), key) for line in lines[1:]]
        refused = subprocess.run([sys.executable, "-m", "tools.demo", "--data", str(data)], cwd=ROOT,
                                 env=clean_env(), capture_output=True, text=True, timeout=60, check=False)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert refused.returncode == 2 and "is in use by another process" in refused.stderr, refused.stderr
    (status, devices), (device_status, device), (commands_status, commands), (alerts_status, alerts), \
        (stats_status, stats), (sent_status, sent) = answers
    assert status == 200 and {d["deviceId"] for d in devices["items"]} == FLEET
    disabled = re.search(r"^Disabled client (sim-\d+)", out, re.MULTILINE)
    assert disabled and [d["deviceId"] for d in devices["items"] if d["state"] == "Disabled"] == [disabled[1]]
    assert device_status == 200 and device["deviceId"] == "sim-000"
    assert device["telemetry"]["metrics"] and device["inference"]["yolo-v8"]["version"] == "8.1"
    assert commands_status == 200
    assert set(QUEUED) | {"update-model"} <= {c["name"] for c in commands["items"]}
    assert alerts_status == 200 and alerts["items"] and {a["deviceId"] for a in alerts["items"]} <= FLEET
    assert len(alerts["items"]) == numbers(r"^Alerts: cpuTempHigh (\d+)$", out)[0]
    inference = numbers(r"^  inference\s+\d+\s+\d+\s+(\d+)", out)[0]
    assert stats_status == 200 and sum(item["count"] for item in stats["items"]) == inference
    assert sent_status == 202 and (sent["deviceId"], sent["name"], sent["status"]) == ("sim-000", "reboot", "pending")
