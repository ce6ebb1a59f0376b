"""The metrics the app emits (docs/operations.md), read as the local view reads them:
names and dimensions from the catalogue, once per batch whatever its size, and the
figures the workbook and the alert rules chart, through the worker."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from shared.platform import metrics
from standins import event_factory as ev
from standins.eventhub_factory import Partition, routed_body
from standins.invoke import InvocationContext, retry_policy
from tests.support.commands import command, registered, send
from tests.support.harness import failing_requests, json_of, user_function
from tests.support.metrics import measured
from tests.support.streams import NOW, hub, ingest, telemetry


def test_every_metric_has_its_own_name_and_the_dimensions_it_is_recorded_with() -> None:
    names = [m.name for m in metrics.CATALOGUE]
    assert len(names) == len(set(names)) and all(n.startswith("edge.") for n in names)
    with pytest.raises(ValueError, match="dimensions"):
        metrics.record(metrics.ARCHIVED, 1, stream="telemetry")  # no partition
    with pytest.raises(ValueError, match="dimensions"):
        metrics.record(metrics.ARCHIVED, 1, stream="telemetry", partition="0", device="cam-1")  # never per device


@pytest.mark.parametrize("size", [10, 100])
def test_a_batch_emits_its_figures_once_whatever_its_size(run: Any, app_env: Any, monkeypatch: Any,
                                                          size: int) -> None:
    log = hub()
    devices = [f"cam-{uuid.uuid4().hex[:6]}" for _ in range(5)]
    good = [telemetry(devices[n % 5], n) for n in range(size - 2)]
    spoofed = routed_body({"timestamp": NOW.isoformat(), "deviceId": "someone-else", "metrics": {"x": 1}},
                          topic=f"devices/{devices[0]}/telemetry", at=NOW)
    log.publish([*good, b"{not json", spoofed])
    with measured(monkeypatch) as seen:
        ingest(run, "telemetry", log.deliver())
    where = {"stream": "telemetry", "partition": "3"}
    assert seen.of("edge.stream.archived", **where) == size - 2
    assert seen.of("edge.stream.dead_lettered", **where, reason="unreadable") == 1
    assert seen.of("edge.stream.dead_lettered", **where, reason="spoofed") == 1
    assert seen.of("edge.stream.lag", **where) == 1, "one lag value per batch"
    assert seen.of("edge.stream.redelivered", **where) == 0
    assert seen.emissions == [4], "archived, two reasons and the lag: one data point each, none per message"

    with measured(monkeypatch) as again:
        ingest(run, "telemetry", log.deliver())  # the host delivers it again
    assert again.of("edge.stream.redelivered", **where) == size - 2
    assert again.of("edge.stream.archived", **where) == 0


def test_the_lag_is_now_minus_the_newest_enqueued_time_of_the_batch(run: Any, app_env: Any,
                                                                    monkeypatch: Any) -> None:
    log = Partition(f"telemetry-{uuid.uuid4().hex[:8]}", "7", first_enqueued=NOW - timedelta(hours=2),
                    spacing=timedelta(minutes=30))
    log.publish([telemetry("lagging", n) for n in range(3)])  # the newest enqueued an hour ago
    with measured(monkeypatch) as seen:
        ingest(run, "telemetry", log.deliver())
    lag = seen.figure("edge.stream.lag", stream="telemetry", partition="7")
    assert lag.count == 1, "one value for the batch"
    assert 3600 <= lag.value <= 3600 + 600, "seconds behind: about an hour, not two"


def test_a_retry_and_the_last_retry_are_counted(run: Any, app_env: Any, monkeypatch: Any) -> None:
    log = hub()
    log.publish([telemetry("d", n) for n in range(5)])
    last = int(retry_policy("telemetry_ingest")["max_retry_count"])
    with measured(monkeypatch) as seen, failing_requests(run, "PUT", "/devstoreaccount1/telemetry/", times=10):
        ingest(run, "telemetry", log.deliver(), retry_count=last)
    assert seen.of("edge.batch.retried", stream="telemetry") == 1
    assert seen.of("edge.batch.last_retry", stream="telemetry") == 5
    assert seen.of("edge.stream.dead_lettered", stream="telemetry", partition="3", reason="internal") == 5
    assert seen.emissions[-1] == 2, "the last retry's dead letters: one emission, not one per event"


def test_rule_alerts_are_counted_once_by_rule(run: Any, app_env: Any, monkeypatch: Any) -> None:
    log = hub()
    device = f"hot-{uuid.uuid4().hex[:6]}"
    log.publish([telemetry(device, n, cpuTemp=95) for n in range(3)])  # one alert: the cooldown holds the rest
    with measured(monkeypatch) as seen:
        ingest(run, "telemetry", log.deliver())
        ingest(run, "telemetry", log.deliver())  # redelivered: the alert exists
    assert seen.of("edge.alerts.raised", rule="cpuTempHigh") == 1


def test_a_command_is_counted_when_sent_and_when_it_ends(run: Any, app_env: Any, monkeypatch: Any) -> None:
    device = registered(run)  # never connected: its commands wait
    with measured(monkeypatch) as seen:
        queued = json_of(send(run, device, {"name": "ping", "timeoutSeconds": 60}))
        answered = json_of(send(run, device, {"name": "ping", "timeoutSeconds": 60}))
        responses = Partition(f"responses-{uuid.uuid4().hex[:6]}", "1")
        cid = answered["commandId"]
        responses.publish([routed_body({"commandId": cid, "status": "succeeded"},
                                       topic=f"devices/{device}/commands/{cid}/response", at=NOW)] * 2)
        run(user_function("command_responses")(responses.deliver(), InvocationContext("command_responses")))
        run(user_function("cancel_command")(_cancel(device, queued["commandId"])))
    assert (queued["status"], command(run, device, cid)["status"]) == ("pending", "succeeded")
    assert seen.of("edge.command.sent", outcome="queued") == 2
    assert seen.of("edge.command.completed", status="succeeded") == 1, "the answer twice: it ended once"
    assert seen.of("edge.command.completed", status="cancelled") == 1
    assert seen.of("edge.command.answer_time", status="succeeded") == 1


def _cancel(device: str, command_id: str) -> Any:
    from tests.support.harness import http_request

    return http_request("POST", "x", route_params={"deviceId": device, "commandId": command_id})


def test_life_cycle_events_are_counted_once_however_often_delivered(run: Any, app_env: Any,
                                                                     monkeypatch: Any) -> None:
    device = f"press-{uuid.uuid4().hex[:6]}"
    handler = user_function("client_lifecycle")
    with measured(monkeypatch) as seen:
        run(handler(ev.connected(device, 1, NOW)))
        run(handler(ev.connected(device, 1, NOW)))  # Event Grid delivers at least once
        run(handler(ev.disconnected(device, 2, NOW + timedelta(seconds=5))))
        run(handler({"not": "an event"}))
    assert seen.of("edge.lifecycle.events", kind="connected") == 1
    assert seen.of("edge.lifecycle.events", kind="disconnected") == 1
    letters = {dims: v for (name, dims), v in seen.added.items() if name == "edge.stream.dead_lettered"}
    assert list(letters.values()) == [1] and ("stream", "lifecycle") in next(iter(letters)), letters


def test_a_flapping_device_is_counted_as_an_alert_of_its_rule(run: Any, app_env: Any, monkeypatch: Any) -> None:
    device = f"flappy-{uuid.uuid4().hex[:6]}"
    handler = user_function("client_lifecycle")
    with measured(monkeypatch) as seen:
        for n in range(3):  # FLAPPING_DISCONNECTS is 3 in the tests' settings
            run(handler(ev.connected(device, 2 * n + 1, NOW + timedelta(seconds=10 * n))))
            run(handler(ev.disconnected(device, 2 * n + 2, NOW + timedelta(seconds=10 * n + 5))))
    assert seen.of("edge.alerts.raised", rule="flapping") == 1
    assert seen.of("edge.lifecycle.events", kind="disconnected") == 3


def test_tools_status_without_a_server_says_how_to_start_one(capsys: Any) -> None:
    from standins.services import free_port
    from tools.status import main

    assert main(["--url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "start one with make serve" in capsys.readouterr().err
