"""Settings: read at first use, defaults from the contract, and a clear error that
names any missing or bad setting."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from shared.platform.errors import ConfigurationError
from shared.platform.settings import AZURITE_CONNECTION_STRING, load_settings, reset_settings
from shared.platform.storage import reset_data_store
from tests.harness import http_request, json_of, user_function


def test_defaults_follow_the_contract() -> None:
    settings = load_settings({"DataStorage": "UseDevelopmentStorage=true"})
    assert settings.data_storage.connection_string == AZURITE_CONNECTION_STRING
    assert (settings.telemetry_hub_name, settings.inference_hub_name, settings.command_responses_hub_name) == (
        "telemetry", "inference", "command-responses")
    assert settings.eventhub_consumer_group == "$Default"
    assert (settings.command_transport, settings.mqtt_broker_url) == ("mqtt", "mqtt://127.0.0.1:1883")
    assert settings.offline_command_policy == "queue"
    assert settings.alerts_hub_name is None


def test_identity_based_storage_needs_both_service_uris() -> None:
    settings = load_settings({
        "DataStorage__blobServiceUri": "https://st.blob.core.windows.net",
        "DataStorage__tableServiceUri": "https://st.table.core.windows.net",
        "DataStorage__credential": "managedidentity", "DataStorage__clientId": "1234"})
    assert settings.data_storage.connection_string is None
    assert settings.data_storage.client_id == "1234"
    with pytest.raises(ConfigurationError, match="DataStorage__tableServiceUri is not set"):
        load_settings({"DataStorage__blobServiceUri": "https://st.blob.core.windows.net"})


@pytest.mark.parametrize("env, named", [
    ({}, "DataStorage is not set"),
    ({"DataStorage": "x", "COMMAND_TRANSPORT": "carrier-pigeon"}, "COMMAND_TRANSPORT='carrier-pigeon'"),
    ({"DataStorage": "x", "COMMAND_TRANSPORT": "eventgrid"}, "EVENTGRID_MQTT_HOSTNAME"),
    ({"DataStorage": "x", "MQTT_BROKER_URL": "http://user:secret@host"}, "MQTT_BROKER_URL"),
    ({"DataStorage": "x", "OFFLINE_COMMAND_POLICY": "drop"}, "OFFLINE_COMMAND_POLICY"),
    ({"DataStorage": "x", "FLAPPING_DISCONNECTS": "11"}, "FLAPPING_DISCONNECTS='11' must be between 1 and 10"),
    ({"DataStorage": "x", "FLAPPING_WINDOW_SECONDS": "soon"}, "FLAPPING_WINDOW_SECONDS='soon' is not a whole"),
    ({"DataStorage__blobServiceUri": "ftp://x", "DataStorage__tableServiceUri": "https://t"}, "not an http(s) URL"),
])
def test_a_bad_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named.replace("(", r"\(").replace(")", r"\)")) as caught:
        load_settings(env)
    assert "secret" not in str(caught.value), "a broker URL's password is never echoed"


@pytest.fixture
def no_data_storage(app_env: Any, run: Any) -> Iterator[None]:
    saved = os.environ.pop("DataStorage")
    run(reset_data_store())
    reset_settings()
    yield
    os.environ["DataStorage"] = saved
    reset_settings()


@pytest.mark.usefixtures("no_data_storage")
def test_a_missing_setting_fails_requests_with_a_problem_naming_it(run: Any) -> None:
    response = run(user_function("get_device")(
        http_request("GET", "devices/a", route_params={"deviceId": "a"})))
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert "DataStorage is not set" in json_of(response)["detail"]
    health = run(user_function("health")(http_request("GET", "health")))
    assert health.status_code == 503
    assert json_of(health)["checks"]["tableStorage"].startswith("misconfigured: DataStorage is not set")


def test_identity_based_storage_builds_clients_with_the_managed_identity(run: Any) -> None:
    from azure.identity.aio import ManagedIdentityCredential

    from shared.platform.storage import DataStore

    settings = load_settings({
        "DataStorage__blobServiceUri": "https://st.blob.core.windows.net",
        "DataStorage__tableServiceUri": "https://st.table.core.windows.net",
        "DataStorage__credential": "managedidentity", "DataStorage__clientId": "1234"})
    store = DataStore(settings.data_storage)
    try:
        assert store.blob_service.url.startswith("https://st.blob.core.windows.net")
        assert store.table_service.url.startswith("https://st.table.core.windows.net")
        credential = store._credential
        assert isinstance(credential, ManagedIdentityCredential)
        assert store.blob_service.credential is credential, "both services share one credential"
    finally:
        run(store.close())
