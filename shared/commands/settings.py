"""Settings of cloud-to-edge commands: the transport and what to do for an offline device."""

from __future__ import annotations

import re
from typing import Literal

from shared.platform.settings import choice, mqtt_url, setting, settings_class

_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")


def api_version(value: str) -> str:
    """An Azure api-version: a date, optionally ``-preview``."""
    if not _API_VERSION.fullmatch(value):
        raise ValueError("must be an api-version such as 2025-02-15-preview")
    return value


@settings_class
class CommandSettings:
    command_transport: Literal["mqtt", "eventgrid"] = setting(
        "COMMAND_TRANSPORT", parse=choice("mqtt", "eventgrid"), default="mqtt")
    eventgrid_mqtt_hostname: str | None = setting("EVENTGRID_MQTT_HOSTNAME")
    # HTTP Publish is a preview API: its api-version is a setting, so a newer preview
    # (or the GA version) is a configuration change; the default is the one tested
    # against the contract-checking stand-in (standins/httppublish.py).
    eventgrid_publish_api_version: str = setting(
        "EVENTGRID_PUBLISH_API_VERSION", parse=api_version, default="2025-02-15-preview")
    # May carry user:password, so it is left out of the repr like the password.
    mqtt_broker_url: str = setting("MQTT_BROKER_URL", parse=mqtt_url, default="mqtt://127.0.0.1:1883", secret=True)
    mqtt_username: str | None = setting("MQTT_USERNAME")
    mqtt_password: str | None = setting("MQTT_PASSWORD", secret=True)
    # Whether App Service authentication guards the API (so the platform sets the
    # X-MS-CLIENT-PRINCIPAL headers and strips any a caller sends): only then is a
    # principal header an identity (CONTRACT: "A header a caller sent is never an
    # identity"). Off by default: infra/ enables no App Service authentication.
    trust_app_service_auth: Literal["true", "false"] = setting(
        "TRUST_APP_SERVICE_AUTH", parse=choice("true", "false"), default="false")
    offline_command_policy: Literal["queue", "reject"] = setting(
        "OFFLINE_COMMAND_POLICY", parse=choice("queue", "reject"), default="queue")

    def problems(self) -> dict[str, str]:
        if self.command_transport == "eventgrid" and not self.eventgrid_mqtt_hostname:
            return {"EVENTGRID_MQTT_HOSTNAME": "must be set when COMMAND_TRANSPORT is eventgrid"}
        return {}
