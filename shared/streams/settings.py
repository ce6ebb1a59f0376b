"""Settings of the stream functions (the hub names also fill their trigger bindings)."""

from __future__ import annotations

from shared.platform.settings import setting, settings_class


@settings_class
class StreamSettings:
    telemetry_hub_name: str = setting("TELEMETRY_HUB_NAME", default="telemetry")
    inference_hub_name: str = setting("INFERENCE_HUB_NAME", default="inference")
    command_responses_hub_name: str = setting("COMMAND_RESPONSES_HUB_NAME", default="command-responses")
    eventhub_consumer_group: str = setting("EVENTHUB_CONSUMER_GROUP", default="$Default")
