"""The stream messages of the contract, as strict pydantic models.

Strict means no coercion: ``"61.5"`` is not a number, ``true`` is not an integer,
``1`` is not a string. Numbers are finite (the JSON parser already refuses NaN,
Infinity and ``1e999``; the models refuse them again for any other caller).
Unknown fields are allowed and kept (``model_extra``) so that a newer device
firmware's fields reach the archive instead of being dropped.

The classes below fix the shape and the rules that never change (types, ranges,
the model name's characters). The size bounds come from
:class:`~shared.streams.limits.StreamLimits`: :func:`bounded_models` derives, once
per set of limits, subclasses whose metrics, tags, detections and labels are
bounded too. Validate through those (``decode`` does); the bare classes accept
any size.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime
from typing import Annotated, Any, NamedTuple

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    GetPydanticSchema,
    PlainValidator,
    StringConstraints,
    create_model,
)
from pydantic.alias_generators import to_camel

from shared.platform.keys import MAX_DEVICE_ID_LENGTH
from shared.platform.timestamps import parse_timestamp
from shared.streams.limits import StreamLimits

# A model name keys the model statistics (a table partition, a URL segment of
# ``/api/models/{modelName}/stats``), so it is kept to characters that need no
# escaping anywhere: 1-64 of letters, digits, ``.``, ``_``, ``-``, starting with a
# letter or digit. A version may also hold ``+`` (semantic versions' build metadata).
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MODEL_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
MAX_ID_LENGTH = 256  # inferenceId, frameId

_CONFIG = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, alias_generator=to_camel,
                     populate_by_name=False)

DeviceIdText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_DEVICE_ID_LENGTH)]
IdText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
UnitFloat = Annotated[float, Field(ge=0.0, le=1.0)]


def _timestamp(value: object) -> datetime:
    return parse_timestamp(value, field="timestamp")


# The foundation's one RFC 3339 parser, as a plain validator: no validation info to
# build and no second datetime check after it, which matters once per message.
MessageTimestamp = Annotated[datetime, PlainValidator(_timestamp)]


# orjson reads an integer beyond 64 bits (2**64 + 1, a 128-bit serial) as the nearest
# double, at least 2**63 in magnitude. The models take it as a float, so latest state
# and the alert rules see that double, as they always did; but the archive must keep
# the number as sent. Narrow models (:func:`bounded_models`) refuse a float this large
# where the contract has numbers (metrics, latencyMs): ``decode`` validates with them,
# a bound that costs nothing, and only for a refused message tries the full models and
# then takes the message from a lossless parse. A float literal this large takes that
# path too, harmlessly.
WIDE = 2.0**63


def _one_error(error_type: str, message: str) -> GetPydanticSchema:
    """Report a union's failure as one readable error instead of one per member."""

    def schema(source: Any, handler: Any) -> Any:
        return {**handler(source), "custom_error_type": error_type, "custom_error_message": message}

    return GetPydanticSchema(schema)


class TelemetryMessage(BaseModel):
    """``{"deviceId"?, "timestamp" | "ts", "sequence"?, "metrics", "tags"?}``."""

    model_config = _CONFIG

    device_id: DeviceIdText | None = None
    timestamp: MessageTimestamp = Field(validation_alias=AliasChoices("timestamp", "ts"))
    sequence: int | None = Field(default=None, ge=0, lt=2**63)
    metrics: dict[str, bool | int | float | str]
    tags: dict[str, str] | None = None


class ModelRef(BaseModel):
    """The model that produced an inference result."""

    model_config = _CONFIG

    name: Annotated[str, StringConstraints(pattern=MODEL_NAME_PATTERN)]
    version: Annotated[str, StringConstraints(pattern=MODEL_VERSION_PATTERN)]


class Detection(BaseModel):
    """One detected object: a label, a confidence and, optionally, a bounding box
    ``[x, y, width, height]`` as fractions of the frame."""

    model_config = _CONFIG

    label: str
    confidence: UnitFloat
    bbox: Annotated[list[UnitFloat], Field(min_length=4, max_length=4)] | None = None


class InferenceMessage(BaseModel):
    """``{"deviceId"?, "timestamp", "inferenceId", "model", "latencyMs"?, "detections", "frameId"?}``."""

    model_config = _CONFIG

    device_id: DeviceIdText | None = None
    timestamp: MessageTimestamp
    inference_id: IdText
    model: ModelRef
    latency_ms: Annotated[float, Field(ge=0.0)] | None = None
    detections: list[Detection]
    frame_id: IdText | None = None


class BoundedModels(NamedTuple):
    telemetry: type[TelemetryMessage]
    inference: type[InferenceMessage]


@functools.cache
def bounded_models(limits: StreamLimits, *, narrow: bool = False) -> BoundedModels:
    """The message models with ``limits``' size bounds, built once per limits;
    ``narrow``: their metrics and latency within +-2**63 (see :data:`WIDE`)."""
    key = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_key_length)]
    text = Annotated[str, StringConstraints(max_length=limits.max_string_length)]
    bound = WIDE if narrow else math.inf
    number = Annotated[float, Field(gt=-bound, lt=bound)]
    metric = Annotated[
        bool | int | number | text,
        _one_error("metric_value", f"a metric must be a finite number, a boolean or a string of at most "
                   f"{limits.max_string_length} characters"),
    ]
    telemetry = create_model(
        "TelemetryMessage", __base__=TelemetryMessage, __module__=__name__,
        metrics=(dict[key, metric], Field(max_length=limits.max_metrics)),
        tags=(dict[key, text] | None, Field(default=None, max_length=limits.max_tags)),
    )
    detection = create_model("Detection", __base__=Detection, __module__=__name__,
                             label=(key, ...))
    inference = create_model(
        "InferenceMessage", __base__=InferenceMessage, __module__=__name__,
        detections=(list[detection], Field(max_length=limits.max_detections)),
        latency_ms=(Annotated[float | None, Field(ge=0.0, lt=bound)], None),
    )
    return BoundedModels(telemetry, inference)
