"""Settings: one class per capability, validated where that capability runs, defaults
from the contract, and one error that names every bad setting with its rule and
never its value."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.alerts.rules import DEFAULT_RULES
from shared.alerts.settings import AlertSettings
from shared.commands.settings import CommandSettings
from shared.lifecycle.settings import LifecycleSettings
from shared.platform.errors import ConfigurationError
from shared.platform.host_storage import HostStorageSettings
from shared.platform.metrics_export import MetricsSettings
from shared.platform.settings import (
    AZURITE_CONNECTION_STRING,
    SettingsError,
    StorageSettings,
    load,
    registered,
    reset_settings,
    setting_names,
    settings_of,
)
from shared.streams.settings import StreamSettings
from standins import event_factory as ev
from standins.invoke import FUNCTIONS, FunctionFailed
from tests.support.harness import changed_settings, deliver, http_request, json_of, user_function

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
CAPABILITY_CLASSES = (AlertSettings, CommandSettings, LifecycleSettings, MetricsSettings, StreamSettings)
CANARY = "Zq9canary7Xv"  # a value that must never be echoed
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def test_defaults_follow_the_contract() -> None:
    assert load(StorageSettings, {"DataStorage": "UseDevelopmentStorage=true"}).connection_string == (
        AZURITE_CONNECTION_STRING)
    assert load(LifecycleSettings, {}) == LifecycleSettings(flapping_disconnects=5, flapping_window_seconds=600)
    assert load(AlertSettings, {}) == AlertSettings(
        rules=DEFAULT_RULES, alerts_hub_name=None, eventhub_connection_string=None, eventhub_namespace=None,
        eventhub_client_id=None, eventhub_credential=None)
    streams = load(StreamSettings, {})
    assert (streams.telemetry_hub_name, streams.inference_hub_name, streams.command_responses_hub_name,
            streams.eventhub_consumer_group) == ("telemetry", "inference", "command-responses", "$Default")
    commands = load(CommandSettings, {})
    assert (commands.command_transport, commands.mqtt_broker_url, commands.offline_command_policy) == (
        "mqtt", "mqtt://127.0.0.1:1883", "queue")
    assert (commands.eventgrid_mqtt_hostname, commands.mqtt_username, commands.mqtt_password) == (None, None, None)


@pytest.mark.parametrize("cls", CAPABILITY_CLASSES, ids=lambda cls: cls.__name__)
def test_empty_and_blank_values_mean_the_default(cls: type[Any]) -> None:
    blank = {name: " " if n % 2 else "" for n, name in enumerate(setting_names(cls))}
    assert load(cls, blank) == load(cls, {})


def test_an_empty_data_storage_is_unset() -> None:
    with pytest.raises(SettingsError, match="DataStorage is not set"):
        load(StorageSettings, {"DataStorage": "", "DataStorage__blobServiceUri": " "})


@pytest.mark.parametrize("cls", [StorageSettings, *CAPABILITY_CLASSES], ids=lambda cls: cls.__name__)
def test_the_sample_settings_are_valid(cls: type[Any]) -> None:
    load(cls, SAMPLE)


def test_identity_based_storage_needs_both_service_uris() -> None:
    settings = load(StorageSettings, {
        "DataStorage__blobServiceUri": "https://st.blob.core.windows.net",
        "DataStorage__tableServiceUri": "https://st.table.core.windows.net",
        "DataStorage__credential": "managedidentity", "DataStorage__clientId": "1234"})
    assert settings.connection_string is None
    assert settings.client_id == "1234"
    with pytest.raises(SettingsError, match="DataStorage__tableServiceUri is not set"):
        load(StorageSettings, {"DataStorage__blobServiceUri": "https://st.blob.core.windows.net"})


@pytest.mark.parametrize("cls, env, name, rule", [
    (StorageSettings, {}, "DataStorage", "is not set"),
    (StorageSettings, {"DataStorage": f"AccountName=a;AccountKey={CANARY};junk"}, "DataStorage",
     "Name=value pairs"),
    (StorageSettings, {"DataStorage": f"AccountName=a;Accountkey={CANARY};AccountKey=b"}, "DataStorage",
     "Name=value pairs"),
    (StorageSettings, {"DataStorage": f"BlobEndpoint=https://b;Key={CANARY}"}, "DataStorage", "AccountKey"),
    (StorageSettings, {"DataStorage": f"BlobEndpoint=https://b;SharedAccessSignature={CANARY}"}, "DataStorage",
     "BlobEndpoint and TableEndpoint"),
    (StorageSettings, {"DataStorage__blobServiceUri": f"ftp://{CANARY}",
                       "DataStorage__tableServiceUri": "https://t"}, "DataStorage__blobServiceUri", "https:// or"),
    (StorageSettings, {"DataStorage__blobServiceUri": "https://b"}, "DataStorage__tableServiceUri",
     "both service URIs"),
    (CommandSettings, {"COMMAND_TRANSPORT": CANARY}, "COMMAND_TRANSPORT", "must be one of mqtt, eventgrid"),
    (CommandSettings, {"COMMAND_TRANSPORT": "eventgrid"}, "EVENTGRID_MQTT_HOSTNAME",
     "must be set when COMMAND_TRANSPORT is eventgrid"),
    (CommandSettings, {"MQTT_BROKER_URL": f"http://user:{CANARY}@host"}, "MQTT_BROKER_URL", "mqtt:// or mqtts://"),
    (CommandSettings, {"MQTT_BROKER_URL": f"mqtts://user:{CANARY}@host:port"}, "MQTT_BROKER_URL", "mqtts://"),
    (CommandSettings, {"OFFLINE_COMMAND_POLICY": CANARY}, "OFFLINE_COMMAND_POLICY", "one of queue, reject"),
    (LifecycleSettings, {"FLAPPING_DISCONNECTS": "11"}, "FLAPPING_DISCONNECTS", "whole number from 1 to 10"),
    (LifecycleSettings, {"FLAPPING_WINDOW_SECONDS": CANARY}, "FLAPPING_WINDOW_SECONDS", "from 1 to 86400"),
    (AlertSettings, {"ALERT_RULES": f'{{"name": "{CANARY}"}}'}, "ALERT_RULES", "must be a JSON list"),
    (AlertSettings, {"ALERT_RULES": f'[{{"name": {CANARY}'}, "ALERT_RULES", "must be a JSON list"),
])
def test_a_bad_setting_is_named_with_its_rule_and_never_its_value(
        cls: type[Any], env: dict[str, str], name: str, rule: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(cls, env)
    assert list(caught.value.problems) == [name]
    assert rule in caught.value.problems[name]
    assert f"{name} {caught.value.problems[name]}" in str(caught.value)
    assert CANARY not in f"{caught.value} {caught.value!r}"
    assert isinstance(caught.value, ConfigurationError), "the HTTP plumbing maps it to a 500 problem"


def test_every_bad_setting_of_a_class_is_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as caught:
        load(CommandSettings, {"COMMAND_TRANSPORT": "pigeon", "MQTT_BROKER_URL": "http://h",
                               "OFFLINE_COMMAND_POLICY": "drop"})
    assert set(caught.value.problems) == {"COMMAND_TRANSPORT", "MQTT_BROKER_URL", "OFFLINE_COMMAND_POLICY"}


def test_identity_based_storage_builds_clients_with_the_managed_identity(run: Any) -> None:
    from azure.identity.aio import ManagedIdentityCredential

    from shared.platform.storage import DataStore

    store = DataStore(load(StorageSettings, {
        "DataStorage__blobServiceUri": "https://st.blob.core.windows.net",
        "DataStorage__tableServiceUri": "https://st.table.core.windows.net",
        "DataStorage__credential": "managedidentity", "DataStorage__clientId": "1234"}))
    try:
        assert store.blob_service.url.startswith("https://st.blob.core.windows.net")
        assert store.table_service.url.startswith("https://st.table.core.windows.net")
        credential = store._credential
        assert isinstance(credential, ManagedIdentityCredential)
        assert store.blob_service.credential is credential, "both services share one credential"
    finally:
        run(store.close())


def test_rules_across_settings_hold_when_they_are_met() -> None:
    commands = load(CommandSettings, {"COMMAND_TRANSPORT": "eventgrid", "EVENTGRID_MQTT_HOSTNAME": "ns.example"})
    assert (commands.command_transport, commands.eventgrid_mqtt_hostname) == ("eventgrid", "ns.example")


def test_secrets_are_left_out_of_the_repr() -> None:
    commands = load(CommandSettings, {"MQTT_PASSWORD": CANARY, "MQTT_BROKER_URL": f"mqtts://u:{CANARY}@h"})
    storage = load(StorageSettings, {"DataStorage": f"AccountName=a;AccountKey={CANARY}"})
    assert commands.mqtt_password == CANARY and storage.connection_string
    assert CANARY not in repr(commands) + repr(storage)


def test_settings_are_validated_once_per_process_until_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAPPING_DISCONNECTS", "4")
    reset_settings()
    first = settings_of(LifecycleSettings)
    monkeypatch.setenv("FLAPPING_DISCONNECTS", "6")
    assert settings_of(LifecycleSettings) is first
    reset_settings()
    assert settings_of(LifecycleSettings).flapping_disconnects == 6
    monkeypatch.undo()
    reset_settings()


def test_health_validates_every_settings_class() -> None:
    import shared.meta.health  # noqa: F401 - importing health registers every capability's class

    assert set(registered()) == {StorageSettings, HostStorageSettings, *CAPABILITY_CLASSES}


# --- through the functions, as the worker calls them -----------------------------

def call(run: Any, name: str, path: str, **kwargs: Any) -> Any:
    return run(user_function(name)(http_request("GET", path, **kwargs)))


@pytest.mark.usefixtures("app_env", "empty_registry")
def test_a_bad_flapping_setting_fails_client_lifecycle_only(run: Any, caplog: pytest.LogCaptureFixture) -> None:
    connect = ev.connected("cfg-1", 1, T0)
    with changed_settings(run, {"FLAPPING_DISCONNECTS": "99"}):
        with pytest.raises(FunctionFailed, match="FLAPPING_DISCONNECTS must be a whole number from 1 to 10"):
            deliver(run, connect)
        assert json_of(call(run, "list_devices", "devices")) == {"items": []}
        assert call(run, "get_device", "devices/cfg-1", route_params={"deviceId": "cfg-1"}).status_code == 404
        assert json_of(call(run, "list_alerts", "alerts")) == {"items": []}
        health = call(run, "health", "health")
        assert health.status_code == 503
        assert json_of(health)["checks"] == {"tableStorage": "ok", "blobStorage": "ok",
                                             "settings": "invalid: FLAPPING_DISCONNECTS"}
        assert any(r.name == "shared.meta.health" and "FLAPPING_DISCONNECTS must be a whole number from 1 to 10"
                   in r.getMessage() for r in caplog.records), "the log has the rule"
    deliver(run, connect)  # the setting fixed, the redelivered event applies
    assert json_of(call(run, "get_device", "devices/cfg-1", route_params={"deviceId": "cfg-1"}))["connected"]


@pytest.mark.usefixtures("app_env")
def test_a_missing_data_storage_fails_requests_with_a_problem_naming_it(run: Any) -> None:
    with changed_settings(run, {"DataStorage": None}):
        response = call(run, "get_device", "devices/a", route_params={"deviceId": "a"})
        assert response.status_code == 500
        assert response.mimetype == "application/problem+json"
        assert json_of(response)["detail"].startswith("DataStorage is not set")
        health = call(run, "health", "health")
    assert health.status_code == 503
    assert json_of(health)["checks"] == {"tableStorage": "misconfigured", "blobStorage": "misconfigured",
                                         "settings": "invalid: DataStorage"}


def http_functions() -> dict[str, tuple[str, str]]:
    """Every HTTP function the app indexes: its route and first method."""
    found: dict[str, tuple[str, str]] = {}
    for name, function in FUNCTIONS.items():
        if function.trigger["type"] == "httpTrigger":
            found[name] = (function.trigger["route"], function.trigger["methods"][0].upper())
    return found


@pytest.mark.usefixtures("app_env")
@pytest.mark.parametrize("broker_url, invalid", [
    (f"mqtts://operator:{CANARY}@broker.example", "DataStorage, FLAPPING_DISCONNECTS"),
    (f"http://operator:{CANARY}@broker.example", "DataStorage, FLAPPING_DISCONNECTS, MQTT_BROKER_URL"),
], ids=["valid-broker-url", "invalid-broker-url"])
def test_no_response_or_log_line_echoes_a_setting_value(
        run: Any, caplog: pytest.LogCaptureFixture, broker_url: str, invalid: str) -> None:
    canaries = {
        "MQTT_PASSWORD": CANARY,
        "MQTT_BROKER_URL": broker_url,
        "DataStorage": f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={CANARY}==;EndpointSuffix",
        "FLAPPING_DISCONNECTS": CANARY,
    }
    functions = http_functions()
    assert {"list_devices", "get_device", "list_alerts", "health", "openapi"} <= set(functions)
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    with changed_settings(run, dict(canaries)):
        for name, (route, method) in functions.items():
            params = {param: "a" for param in re.findall(r"{(\w+)}", route)}
            try:
                response = run(user_function(name)(http_request(method, route, route_params=params)))
            except Exception as exc:
                seen.append(f"{name} raised {exc!r}")
                continue
            seen += [response.get_body().decode(), repr(dict(response.headers))]
            if name == "health":
                assert json_of(response)["checks"]["settings"] == f"invalid: {invalid}"
        with pytest.raises(FunctionFailed, match="SettingsError") as caught:
            deliver(run, ev.connected("cfg-2", 1, T0))
        seen.append(caught.value.message + caught.value.stack_trace)  # what the host logs of it
    formatter = logging.Formatter()
    seen += [formatter.format(record) for record in caplog.records]
    assert any("DataStorage" in text for text in seen), "the failures were seen and named"
    leaks = [text for text in seen if CANARY in text]
    assert leaks == []
