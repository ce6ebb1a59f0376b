"""Settings of the stream functions (the hub names also fill their trigger bindings)."""

from __future__ import annotations

from shared.platform.settings import bounded_int, setting, settings_class


@settings_class
class StreamSettings:
    telemetry_hub_name: str = setting("TELEMETRY_HUB_NAME", default="telemetry")
    inference_hub_name: str = setting("INFERENCE_HUB_NAME", default="inference")
    command_responses_hub_name: str = setting("COMMAND_RESPONSES_HUB_NAME", default="command-responses")
    eventhub_consumer_group: str = setting("EVENTHUB_CONSUMER_GROUP", default="$Default")
    # How far a message's timestamp may lie ahead of its event's enqueued time.
    max_future_seconds: int = setting("MAX_FUTURE_SECONDS", parse=bounded_int(0, 86400), default=300)
