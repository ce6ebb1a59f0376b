"""The metrics leave the process as Application Insights ingests them: a fresh
interpreter configured as ``infra/`` configures the app (the connection string) sends
its batch's figures to the ingestion endpoint's Track API (``/v2.1/track``) as metric
envelopes whose properties become ``customDimensions``; here the endpoint is a local
HTTP server that records the requests."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.platform.metrics_export import credential
from standins.services import ROOT

EMIT = """
from opentelemetry import metrics as api
from shared.platform import metrics
with metrics.batch():
    metrics.record(metrics.ARCHIVED, 98, stream="telemetry", partition="3")
    metrics.record(metrics.ARCHIVED, 2, stream="telemetry", partition="3")
    metrics.record(metrics.LAG, 2.5, stream="telemetry", partition="3")
    metrics.record(metrics.DEAD_LETTERED, 1, stream="telemetry", partition="3", reason="spoofed")
getattr(api.get_meter_provider(), "force_flush", lambda: None)()
"""


@pytest.fixture
def ingestion() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Track(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.append({"path": self.path, "envelopes": json.loads(body)})
            answer = json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Track)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", received
    finally:
        server.shutdown()


def test_a_batch_s_figures_reach_application_insights_as_metric_envelopes(
        ingestion: tuple[str, list[dict[str, Any]]]) -> None:
    endpoint, received = ingestion
    key = "00000000-0000-0000-0000-000000000001"
    env = {"PATH": os.environ.get("PATH", ""), "OTEL_SERVICE_NAME": "func-edge-test",
           "APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey={key};IngestionEndpoint={endpoint}",
           "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true"}
    done = subprocess.run([sys.executable, "-c", EMIT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    envelopes = [e for request in received if request["path"] == "/v2.1/track" for e in request["envelopes"]]
    points = {m["name"]: (m, e["data"]["baseData"]["properties"], e) for e in envelopes
              if e["name"] == "Microsoft.ApplicationInsights.Metric" for m in e["data"]["baseData"]["metrics"]
              if m["name"].startswith("edge.")}  # the exporter sends counts of its own (Item_Success_Count)
    assert set(points) == {"edge.stream.archived", "edge.stream.lag", "edge.stream.dead_lettered"}
    archived, dimensions, envelope = points["edge.stream.archived"]
    assert (archived["value"], dimensions) == (100, {"stream": "telemetry", "partition": "3"}), "one point, summed"
    assert envelope["iKey"] == key and envelope["tags"]["ai.cloud.role"] == "func-edge-test"
    lag, _, _ = points["edge.stream.lag"]
    assert (lag["value"], lag["count"], lag["max"]) == (2.5, 1, 2.5)
    assert points["edge.stream.dead_lettered"][1] == {"stream": "telemetry", "partition": "3", "reason": "spoofed"}


def test_nothing_is_exported_without_a_connection_string(ingestion: tuple[str, list[dict[str, Any]]]) -> None:
    _, received = ingestion
    done = subprocess.run([sys.executable, "-c", EMIT], cwd=ROOT, env={"PATH": os.environ.get("PATH", "")},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert received == []


@pytest.mark.parametrize("authentication, client_id", [
    ("ClientId=6f1c1a5e-0000-4000-8000-000000000001;Authorization=AAD", "6f1c1a5e-0000-4000-8000-000000000001"),
    ("Authorization=AAD", None),  # a system-assigned identity
])
def test_the_host_s_authentication_string_selects_the_managed_identity(authentication: str,
                                                                       client_id: str | None) -> None:
    from azure.identity import ManagedIdentityCredential

    found = credential(authentication)
    assert isinstance(found, ManagedIdentityCredential)
    settings = getattr(getattr(found, "_credential", None), "_settings", {})  # azure-identity's IMDS credential
    assert settings.get("client_id") == client_id


@pytest.mark.parametrize("authentication", ["", "Authorization=Key", "ClientId=abc"])
def test_without_aad_in_the_authentication_string_the_key_in_the_connection_string_is_used(
        authentication: str) -> None:
    assert credential(authentication) is None


def test_an_exporter_that_cannot_be_configured_costs_no_batch(ingestion: tuple[str, list[dict[str, Any]]]) -> None:
    _, received = ingestion
    env = {"PATH": os.environ.get("PATH", ""), "APPLICATIONINSIGHTS_CONNECTION_STRING": "not a connection string"}
    done = subprocess.run([sys.executable, "-c", EMIT + "print('batch done')"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "batch done" in done.stdout, done.stderr
    assert done.stderr.count("the metrics exporter could not be configured") == 1, "logged once"
    assert received == []


def test_health_names_a_connection_string_that_is_not_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.meta.health  # noqa: F401 - registers every capability's settings
    from shared.platform.settings import reset_settings, settings_problems

    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "https://example.com")
    reset_settings()
    try:
        assert settings_problems()["APPLICATIONINSIGHTS_CONNECTION_STRING"].startswith(
            "must be Application Insights' connection string")
    finally:
        monkeypatch.undo()
        reset_settings()
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" not in settings_problems()
