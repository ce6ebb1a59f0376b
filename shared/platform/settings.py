"""Settings of the function app, read from the environment at first use.

Every setting named here is listed in ``local.settings.sample.json``, the README and
the function app's settings in ``infra/``. Reading is lazy so that importing
``function_app`` needs no setting; a missing or bad value raises
:class:`ConfigurationError` naming the setting.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import urlsplit

from shared.platform.errors import ConfigurationError

# The well-known Azurite account; "UseDevelopmentStorage=true" means this.
AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


@dataclass(frozen=True)
class StorageConnection:
    """How to reach ``DataStorage``: a connection string or identity-based URIs."""

    connection_string: str | None = None
    blob_service_uri: str | None = None
    table_service_uri: str | None = None
    client_id: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class Settings:
    data_storage: StorageConnection
    telemetry_hub_name: str
    inference_hub_name: str
    command_responses_hub_name: str
    eventhub_consumer_group: str
    alerts_hub_name: str | None
    command_transport: Literal["eventgrid", "mqtt"]
    eventgrid_mqtt_hostname: str | None
    mqtt_broker_url: str
    mqtt_username: str | None
    mqtt_password: str | None
    offline_command_policy: Literal["queue", "reject"]
    alert_rules_json: str | None
    flapping_disconnects: int
    flapping_window_seconds: int


def _get(env: dict[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _choice(env: dict[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = _get(env, name) or default
    if value not in allowed:
        raise ConfigurationError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _positive_int(env: dict[str, str], name: str, default: int, maximum: int = 2**31 - 1) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None
    if not 1 <= value <= maximum:
        raise ConfigurationError(f"{name}={raw!r} must be between 1 and {maximum}")
    return value


def _storage_connection(env: dict[str, str], name: str) -> StorageConnection:
    raw = _get(env, name)
    if raw is not None:
        if raw.replace(" ", "").lower() == "usedevelopmentstorage=true":
            raw = AZURITE_CONNECTION_STRING
        return StorageConnection(connection_string=raw)
    blob_uri = _get(env, f"{name}__blobServiceUri")
    table_uri = _get(env, f"{name}__tableServiceUri")
    if blob_uri is None and table_uri is None:
        raise ConfigurationError(
            f"{name} is not set: set {name} to a storage connection string "
            f"(UseDevelopmentStorage=true for Azurite), or set {name}__blobServiceUri "
            f"and {name}__tableServiceUri for a managed identity"
        )
    for setting, uri in ((f"{name}__blobServiceUri", blob_uri), (f"{name}__tableServiceUri", table_uri)):
        if uri is None:
            raise ConfigurationError(f"{setting} is not set (both service URIs are needed)")
        parts = urlsplit(uri)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ConfigurationError(f"{setting}={uri!r} is not an http(s) URL")
    return StorageConnection(
        blob_service_uri=blob_uri,
        table_service_uri=table_uri,
        client_id=_get(env, f"{name}__clientId"),
        credential=_get(env, f"{name}__credential"),
    )


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Validate the environment into :class:`Settings` (raises ConfigurationError)."""
    env = dict(os.environ if env is None else env)
    broker = _get(env, "MQTT_BROKER_URL") or "mqtt://127.0.0.1:1883"
    parts = urlsplit(broker)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        # The value is not echoed: it may carry a password.
        raise ConfigurationError("MQTT_BROKER_URL is not an mqtt:// or mqtts:// URL")
    transport = _choice(env, "COMMAND_TRANSPORT", ("mqtt", "eventgrid"), "mqtt")
    hostname = _get(env, "EVENTGRID_MQTT_HOSTNAME")
    if transport == "eventgrid" and hostname is None:
        raise ConfigurationError("EVENTGRID_MQTT_HOSTNAME is not set but COMMAND_TRANSPORT=eventgrid needs it")
    return Settings(
        data_storage=_storage_connection(env, "DataStorage"),
        telemetry_hub_name=_get(env, "TELEMETRY_HUB_NAME") or "telemetry",
        inference_hub_name=_get(env, "INFERENCE_HUB_NAME") or "inference",
        command_responses_hub_name=_get(env, "COMMAND_RESPONSES_HUB_NAME") or "command-responses",
        eventhub_consumer_group=_get(env, "EVENTHUB_CONSUMER_GROUP") or "$Default",
        alerts_hub_name=_get(env, "ALERTS_HUB_NAME"),
        command_transport=cast(Literal["eventgrid", "mqtt"], transport),
        eventgrid_mqtt_hostname=hostname,
        mqtt_broker_url=broker,
        mqtt_username=_get(env, "MQTT_USERNAME"),
        mqtt_password=_get(env, "MQTT_PASSWORD"),
        offline_command_policy=cast(
            Literal["queue", "reject"], _choice(env, "OFFLINE_COMMAND_POLICY", ("queue", "reject"), "queue")),
        alert_rules_json=_get(env, "ALERT_RULES"),
        # The connection history keeps 20 session events: 10 connect-disconnect pairs.
        flapping_disconnects=_positive_int(env, "FLAPPING_DISCONNECTS", 5, maximum=10),
        flapping_window_seconds=_positive_int(env, "FLAPPING_WINDOW_SECONDS", 600),
    )


@functools.cache
def get_settings() -> Settings:
    """The process's settings, validated once at first use."""
    return load_settings()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment)."""
    get_settings.cache_clear()
