"""The alerts' HTTP operations, as the OpenAPI document describes them."""

from __future__ import annotations

from shared.alerts.models import AlertList
from shared.platform.operations import LIMIT, Operation, Param

OPERATIONS = (
    Operation("get", "/alerts", "list_alerts", "List alerts, newest first",
              {200: ("The alerts, newest first", AlertList)},
              (Param("deviceId", "query", {"type": "string", "minLength": 1, "maxLength": 128},
                     "Only this device's alerts."),
               Param("since", "query", {"type": "string", "format": "date-time"},
                     "RFC 3339 with a time zone; default 7 days ago."),
               LIMIT)),
)
