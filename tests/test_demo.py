"""``make demo``: the whole day runs green against a fresh Azurite, and its check
that every message sent is in exactly one place is a real check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tools.demo import Place, misplaced

ROOT = Path(__file__).resolve().parents[1]


def numbers(pattern: str, text: str) -> list[int]:
    found = re.search(pattern, text, re.MULTILINE)
    assert found is not None, f"{pattern!r} is not in the demo's output:\n{text}"
    return [int(group) for group in found.groups()]


def test_the_demo_runs_green_and_accounts_for_every_message_it_streams() -> None:
    # A clean environment: the demo runs on its embedded defaults, not on the test session's settings.
    env = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "TMPDIR", "LANG")}
    done = subprocess.run([sys.executable, "-m", "tools.demo"], cwd=ROOT, env=env | {"PYTHONIOENCODING": "utf-8"},
                          capture_output=True, text=True, encoding="utf-8", timeout=120, check=False)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
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
