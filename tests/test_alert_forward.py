"""Forwarding alerts to ALERTS_HUB_NAME: nothing without a hub, JSON events batched
per device with the SDK's own EventDataBatch (its real size accounting), nothing lost
or repeated, a failure raised, and the real client built from either kind of
connection setting (without connecting: no Event Hub runs here)."""

from __future__ import annotations

import inspect
import json
import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.exceptions import ConnectionLostError

from shared.alerts.forward import AlertHub, Closeable, Producer, alert_hub, producer_client, reset_alert_hub
from shared.alerts.models import Alert
from shared.alerts.settings import AlertSettings
from shared.platform.settings import SettingsError, load, reset_settings
from tests.support.producer_double import ProducerDouble

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CONNECTION = "Endpoint=sb://evhns-edge.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0"
HUB = {"ALERTS_HUB_NAME": "alerts", "EventHubConnection": CONNECTION}
CANARY = "Zq9canary7Xv"


class Credential:
    closed = False

    async def close(self) -> None:
        self.closed = True


def hub_of(producer: ProducerDouble, env: dict[str, str] | None = None,
           owned: Credential | None = None) -> tuple[AlertHub, list[AlertSettings]]:
    built: list[AlertSettings] = []

    def factory(settings: AlertSettings) -> tuple[Producer, Closeable | None]:
        built.append(settings)
        return producer, owned

    return AlertHub(load(AlertSettings, HUB if env is None else env), factory), built


def alert(device_id: str, n: int, at: datetime = T0) -> Alert:
    return Alert(alert_id=f"{device_id}-{n:05d}", device_id=device_id, rule="cpuTempHigh", severity="warning",
                 stream="telemetry", message=f"device {device_id!r}: cpuTemp is {80 + n % 20}", value=80 + n % 20,
                 timestamp=at, raised_at=NOW)


def test_the_double_takes_the_real_clients_parameters() -> None:
    for name in ("create_batch", "send_batch", "close"):
        real = inspect.signature(getattr(EventHubProducerClient, name)).parameters
        double = inspect.signature(getattr(ProducerDouble, name)).parameters
        assert [p for p in double if p not in real] == [], name
        assert all(double[p].kind == real[p].kind for p in double), name


def test_without_a_hub_nothing_is_built_or_sent(run: Any) -> None:
    producer = ProducerDouble()
    hub, built = hub_of(producer, {"EventHubConnection": CONNECTION})
    run(hub.send([alert("d", 1)]))
    assert (built, producer.created, hub.enabled) == ([], [], False)


def test_no_alerts_build_no_client(run: Any) -> None:
    hub, built = hub_of(ProducerDouble())
    run(hub.send([]))
    assert built == []


def test_forward_without_a_hub_imports_no_event_hubs_sdk() -> None:
    script = ("import asyncio, sys; from shared.alerts import forward; from shared.alerts.models import Alert; "
              "t = '2026-11-20T08:00:00Z'; "
              "a = Alert(alert_id='a', device_id='d', rule='r', severity='info', stream='telemetry', message='m', "
              "timestamp=t, raised_at=t); "
              "asyncio.run(forward.forward([a])); "
              "print(sorted(m for m in sys.modules if m.startswith('azure.eventhub')))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={}, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_one_alert_is_one_json_event_keyed_by_its_device(run: Any) -> None:
    producer, credential = ProducerDouble(), Credential()
    hub, built = hub_of(producer, owned=credential)
    sent = alert("camera-017", 1)
    run(hub.send([sent]))
    [(key, event)] = producer.events()
    assert key == "camera-017"
    assert event.body_as_json() == sent.to_json_dict() == json.loads(sent.model_dump_json(by_alias=True,
                                                                                          exclude_none=True))
    assert (event.content_type, event.message_id) == ("application/json", sent.alert_id)
    assert Alert.model_validate(event.body_as_json()) == sent
    run(hub.send([alert("camera-017", 2)]))
    assert len(built) == 1, "one producer for the process"
    run(hub.close())
    assert producer.closed and credential.closed


def test_two_thousand_alerts_are_split_into_full_batches_with_nothing_lost_or_repeated(run: Any) -> None:
    rng = random.Random(5)
    devices = [f"dev-{n}" for n in range(7)]
    alerts = [alert(rng.choice(devices), n, T0 + timedelta(seconds=rng.randrange(86_400))) for n in range(2000)]
    producer = ProducerDouble(max_size_in_bytes=16 * 1024)
    hub, _ = hub_of(producer)
    run(hub.send(alerts + alerts[:300]))  # repeats in the input are sent once
    events = producer.events()
    assert Counter(e.message_id for _, e in events) == Counter(a.alert_id for a in alerts)
    assert all(key == e.body_as_json()["deviceId"] for key, e in events), "each batch holds its device's alerts"
    assert len(producer.sent) > 2 * len(devices), "batches were full and split"
    per_device: dict[str, list[str]] = {}
    for key, event in events:
        assert key is not None
        per_device.setdefault(key, []).append(event.body_as_json()["timestamp"])
    assert all(times == sorted(times) for times in per_device.values()), "one device's alerts in time order"
    assert sum(len(b) for b in producer.sent) == 2000


def test_a_failed_send_raises_and_the_retry_sends_everything_again(run: Any) -> None:
    alerts = [alert("d", n) for n in range(300)]
    producer = ProducerDouble(max_size_in_bytes=8 * 1024, fail_on=2)
    hub, _ = hub_of(producer)
    with pytest.raises(ConnectionLostError):
        run(hub.send(alerts))
    sent_before = {e.message_id for _, e in producer.events()}
    assert 0 < len(sent_before) < 300
    run(hub.send(alerts))  # the host retries the invocation: at least once
    ids = [e.message_id for _, e in producer.events()]
    assert set(ids) == {a.alert_id for a in alerts} and len(ids) == 300 + len(sent_before)


def test_an_alert_larger_than_an_empty_batch_raises(run: Any) -> None:
    producer = ProducerDouble(max_size_in_bytes=200)
    hub, _ = hub_of(producer)
    with pytest.raises(ValueError, match="size limit"):
        run(hub.send([alert("d", 1)]))
    assert producer.sent == []


def test_the_process_wide_hub_follows_the_settings(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTS_HUB_NAME", "alerts")
    monkeypatch.setenv("EventHubConnection", CONNECTION)
    reset_settings()
    try:
        first = alert_hub()
        assert first.enabled and alert_hub() is first
        run(reset_alert_hub())
        monkeypatch.delenv("ALERTS_HUB_NAME")
        reset_settings()
        assert not alert_hub().enabled
    finally:
        run(reset_alert_hub())
        monkeypatch.undo()
        reset_settings()


# --- the real client, from either kind of connection setting ----------------------------

def namespace(producer: EventHubProducerClient) -> str:
    """The host the client will connect to (azure-eventhub 5.x exposes only ``eventhub_name``)."""
    return str(producer._address.hostname)


def test_a_connection_string_builds_a_client_of_its_namespace_and_the_alerts_hub(run: Any) -> None:
    producer, owned = producer_client(load(AlertSettings, HUB))
    try:
        assert isinstance(producer, EventHubProducerClient) and owned is None
        assert (namespace(producer), producer.eventhub_name) == ("evhns-edge.servicebus.windows.net", "alerts")
    finally:
        run(producer.close())


def test_the_hub_name_wins_over_an_entity_path(run: Any) -> None:
    settings = load(AlertSettings, {"ALERTS_HUB_NAME": "alerts", "EventHubConnection": f"{CONNECTION};EntityPath=x"})
    producer, _ = producer_client(settings)
    try:
        assert isinstance(producer, EventHubProducerClient) and producer.eventhub_name == "alerts"
    finally:
        run(producer.close())


@pytest.mark.parametrize("credential, expected", [("managedidentity", "ManagedIdentityCredential"),
                                                  (None, "DefaultAzureCredential")])
def test_a_namespace_builds_a_client_with_the_identity(run: Any, credential: str | None, expected: str) -> None:
    env = {"ALERTS_HUB_NAME": "alerts",
           "EventHubConnection__fullyQualifiedNamespace": "evhns-edge.servicebus.windows.net",
           "EventHubConnection__clientId": "00000000-0000-0000-0000-000000000001"}
    if credential:
        env["EventHubConnection__credential"] = credential
    producer, owned = producer_client(load(AlertSettings, env))
    try:
        assert isinstance(producer, EventHubProducerClient)
        assert (namespace(producer), producer.eventhub_name) == ("evhns-edge.servicebus.windows.net", "alerts")
        assert type(owned).__name__ == expected
        assert getattr(producer, "_credential", None) is owned, "the client authenticates with the credential we close"
    finally:
        run(producer.close())
        assert owned is not None
        run(owned.close())


def test_the_sample_connection_string_of_the_emulator_is_valid() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert load(AlertSettings, {**sample, "ALERTS_HUB_NAME": "alerts"}).eventhub_connection_string


@pytest.mark.parametrize("env, name, rule", [
    ({"ALERTS_HUB_NAME": "alerts"}, "EventHubConnection", "is not set, and ALERTS_HUB_NAME needs it"),
    ({"EventHubConnection": f"SharedAccessKey={CANARY}"}, "EventHubConnection", "Endpoint=sb://"),
    ({"EventHubConnection": f"Endpoint=https://h.example;SharedAccessKey={CANARY}"}, "EventHubConnection",
     "Endpoint=sb://"),
    ({"EventHubConnection": f"Endpoint=sb://h.example:{CANARY};SharedAccessKeyName=a;SharedAccessKey=b"},
     "EventHubConnection", "Endpoint=sb://"),
    ({"EventHubConnection": f"Endpoint=sb://h.example;SharedAccessKey={CANARY}"}, "EventHubConnection",
     "SharedAccessKeyName and SharedAccessKey"),
    ({"EventHubConnection": f"{CANARY};Endpoint=sb://h"}, "EventHubConnection", "Name=value pairs"),
    ({"EventHubConnection__fullyQualifiedNamespace": f"sb://{CANARY}.servicebus.windows.net"},
     "EventHubConnection__fullyQualifiedNamespace", "must be a host name"),
    ({"EventHubConnection__credential": CANARY}, "EventHubConnection__credential", "must be managedidentity"),
])
def test_a_bad_connection_setting_is_named_and_never_echoed(env: dict[str, str], name: str, rule: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(AlertSettings, env)
    assert list(caught.value.problems) == [name]
    assert rule in caught.value.problems[name]
    assert CANARY not in f"{caught.value} {caught.value!r}"


def test_the_connection_string_is_a_secret_and_wins_over_the_namespace(run: Any) -> None:
    settings = load(AlertSettings, {**HUB, "EventHubConnection__fullyQualifiedNamespace": "other.example.net"})
    assert "c2VjcmV0" not in repr(settings)
    producer, owned = producer_client(settings)
    try:
        assert isinstance(producer, EventHubProducerClient) and owned is None
        assert namespace(producer) == "evhns-edge.servicebus.windows.net"
    finally:
        run(producer.close())
