"""Settings of cloud-to-edge commands: the transport and what to do for an offline device."""

from __future__ import annotations

from typing import Literal

from shared.platform.settings import choice, mqtt_url, setting, settings_class


@settings_class
class CommandSettings:
    command_transport: Literal["mqtt", "eventgrid"] = setting(
        "COMMAND_TRANSPORT", parse=choice("mqtt", "eventgrid"), default="mqtt")
    eventgrid_mqtt_hostname: str | None = setting("EVENTGRID_MQTT_HOSTNAME")
    # May carry user:password, so it is left out of the repr like the password.
    mqtt_broker_url: str = setting("MQTT_BROKER_URL", parse=mqtt_url, default="mqtt://127.0.0.1:1883", secret=True)
    mqtt_username: str | None = setting("MQTT_USERNAME")
    mqtt_password: str | None = setting("MQTT_PASSWORD", secret=True)
    offline_command_policy: Literal["queue", "reject"] = setting(
        "OFFLINE_COMMAND_POLICY", parse=choice("queue", "reject"), default="queue")

    def problems(self) -> dict[str, str]:
        if self.command_transport == "eventgrid" and not self.eventgrid_mqtt_hostname:
            return {"EVENTGRID_MQTT_HOSTNAME": "must be set when COMMAND_TRANSPORT is eventgrid"}
        return {}
