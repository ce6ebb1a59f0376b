"""An alert, whichever stream raised it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from shared.platform.models import ApiModel

Severity = Literal["info", "warning", "critical"]


class Alert(ApiModel):
    alert_id: str
    device_id: str
    rule: str
    severity: Severity
    stream: Literal["lifecycle", "telemetry", "inference"]
    message: str
    value: Any = None
    timestamp: datetime
    raised_at: datetime


class AlertList(ApiModel):
    items: list[Alert]
