"""Schemathesis over every method of the OpenAPI document the local server serves:
every check (not a server error, response schema, status code, content type, negative
data rejected, positive data accepted, the stateful links), as schemathesis.toml sets
them, against ``python -m tools.serve`` on storage that holds devices, a queued command
and a dead letter, so the operations that read them are reached."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from standins import event_factory as ev
from standins.services import ROOT, Mosquitto, run_azurite
from tests.support.harness import changed_settings, command_line, deliver, read_until

KEY = "schemathesis-" + uuid.uuid4().hex
T0 = datetime.now(UTC) - timedelta(hours=1)


def seed(run: Any) -> None:
    """Devices, connected and not, and a life cycle event of a type no one knows (a dead letter)."""
    for n, device in enumerate(("cam-1", "cam-2", "gateway 3")):
        deliver(run, ev.created_or_updated(device, T0, attributes={"site": "plant-a"}))
        if n % 2 == 0:
            deliver(run, ev.connected(device, 1, T0 + timedelta(minutes=1)))
    deliver(run, ev.connected("cam-2", 1, T0) | {"eventType": "Microsoft.EventGrid.MQTTClientSomethingNew"})


@pytest.fixture(scope="module")
def server(app_env: Any, mosquitto: Mosquitto, run: Any) -> Iterator[str]:
    """The server on its own Azurite (schemathesis's broadcasts stay out of other
    tests' listings), seeded through the functions as the host would deliver events."""
    with run_azurite() as azurite:
        with changed_settings(run, {"DataStorage": azurite.connection_string,
                                    "AzureWebJobsStorage": azurite.connection_string}):
            seed(run)
        with command_line("--port", "0", "--key", KEY, "--storage", azurite.connection_string,
                          "--broker", mosquitto.url) as (_, lines):
            yield read_until(lines, "Listening on ", []).removeprefix("Listening on ")


def test_schemathesis_finds_nothing_over_every_method_of_the_served_document(server: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{server}/api/openapi.json",
         "-H", f"x-functions-key: {KEY}", "--no-color"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    summary = result.stdout[result.stdout.find("SUMMARY"):]
    # Each finding's reproduction may carry a URL of kilobytes: its head says what failed.
    findings = [line[:300] for line in result.stdout.splitlines()]
    assert result.returncode == 0, "\n".join(findings[-200:])
    assert "Tested: 15" in summary and "Stateful" in summary, summary
