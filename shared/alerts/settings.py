"""Settings of alerts: forwarding to a hub and the stream alert rules."""

from __future__ import annotations

from shared.platform.settings import json_list, setting, settings_class


@settings_class
class AlertSettings:
    alerts_hub_name: str | None = setting("ALERTS_HUB_NAME")
    # Only its shape is checked here; the stream capability validates each rule.
    alert_rules_json: str | None = setting("ALERT_RULES", parse=json_list)
