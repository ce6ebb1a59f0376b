"""The model statistics over HTTP, as the OpenAPI document describes them."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.platform.models import ApiModel
from shared.platform.operations import Operation, Param


class ModelHour(ApiModel):
    """One model version's results in one UTC hour, across the fleet."""

    version: str
    hour: datetime
    count: int = Field(ge=1)
    latency_ms_mean: float | None = None
    latency_ms_max: float | None = None
    labels: dict[str, int] = Field(description="Detections by label.")
    other_labels: int | None = Field(
        default=None, ge=1, description="Detections whose label is not in labels: an Event Hubs partition's labels "
        "of the hour had filled their row (704 KiB: 21 800 labels of 10 characters, 5 800 of 100) before it came.")


class ModelStats(ApiModel):
    model: str
    items: list[ModelHour]


OPERATIONS = (
    Operation("get", "/models/{modelName}/stats", "get_model_stats",
              "A model's results per version and UTC hour: count, latency, detections by label",
              {200: ("Per version and hour, oldest first", ModelStats)},
              (Param("modelName", "path", {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}),
               Param("since", "query", {"type": "string", "format": "date-time"},
                     "Default: 24 hours before until; at most 31 days before until."),
               Param("until", "query", {"type": "string", "format": "date-time"}, "Default: now."))),
)
