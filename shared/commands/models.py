"""Commands, fleet jobs and broadcasts: requests and resources as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from shared.platform.errors import InvalidInput
from shared.platform.keys import COMMANDABLE_DEVICE_ID_PATTERN, MAX_DEVICE_ID_LENGTH, validate_commandable_device_id
from shared.platform.models import ApiModel

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
# A command topic is devices/{id}/commands/{name}; the routing sends devices/{id}/telemetry,
# .../inference and .../commands/{id}/response to the ingest hubs. Names that would make
# a command look like one of those to a reader of topics are refused.
RESERVED_NAMES = frozenset({"telemetry", "inference", "response"})
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_FLEET_DEVICES = 1000
MAX_IDEMPOTENCY_KEY_LENGTH = 256

Status = Literal["pending", "sent", "succeeded", "failed", "rejected", "expired", "cancelled"]
STATUSES: tuple[str, ...] = get_args(Status)  # for the query parameter and its document
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "rejected", "expired", "cancelled"})
ResponseStatus = Literal["succeeded", "failed", "rejected"]


def _integral(value: Any) -> Any:
    """A JSON number with no fraction (``2596.0``) as the integer it is: JSON Schema
    counts it as an integer, so the OpenAPI document's ``integer`` takes it. Anything
    else goes on unchanged to the strict check (``true`` and ``"60"`` stay refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A whole number as JSON Schema means it: 60 or 60.0, never true or "60".
JsonInt = Annotated[StrictInt, BeforeValidator(_integral)]


class _Request(ApiModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)


class CommandRequest(_Request):
    """``POST /api/devices/{deviceId}/commands``."""

    name: str = Field(pattern=NAME_PATTERN, description="1-64 of letters, digits, '.', '_', '-'.")
    payload: Any = None
    timeout_seconds: JsonInt = Field(default=300, ge=1, le=86400)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.lower() in RESERVED_NAMES:
            raise ValueError(f"{name!r} is reserved: devices/{{id}}/{name.lower()} topics are routed to the "
                             "ingest hubs, so a command of that name could be mistaken for device data")
        return name


def _commandable(device_id: str) -> str:
    """A fleet job's device id, checked as ``send_command`` checks its route's: an
    id of 510 characters made a member row's key too long (a 500), an empty one a
    member row the counts never read, so they never added up to the total."""
    try:
        return validate_commandable_device_id(device_id)
    except InvalidInput as exc:
        shown = device_id if len(device_id) <= 64 else device_id[:64] + "…"
        raise ValueError(exc.reason.replace("device id", f"device id {shown!r}", 1)) from None


COMMANDABLE_DEVICE_ID_SCHEMA = {
    "type": "string", "minLength": 1, "maxLength": MAX_DEVICE_ID_LENGTH, "pattern": COMMANDABLE_DEVICE_ID_PATTERN,
    "description": "An MQTT client authentication name without '/', '+', '#' or control characters."}
CommandableDeviceId = Annotated[str, AfterValidator(_commandable), WithJsonSchema(COMMANDABLE_DEVICE_ID_SCHEMA)]


def _exactly_one(schema: dict[str, Any], *names: str) -> None:
    """A model's JSON schema: exactly one of ``names`` present, none of them null."""
    schema["oneOf"] = [{"required": [name]} for name in names]
    for name in names:
        field = schema["properties"][name]
        choices = [c for c in field.pop("anyOf", []) if c.get("type") != "null"]
        if len(choices) == 1:
            field.update(choices[0])
        field.pop("default", None)


class FleetTarget(_Request):
    """Exactly one of ``deviceIds`` and ``attributes``."""

    # The schema says so too (oneOf; "target": {} was allowed by the document and
    # refused by the API), and neither may be null: None here only means "not given".
    model_config = ConfigDict(json_schema_extra=lambda schema: _exactly_one(schema, "deviceIds", "attributes"))

    device_ids: list[CommandableDeviceId] | None = Field(default=None, min_length=1, max_length=MAX_FLEET_DEVICES)
    attributes: dict[str, str | int | float | bool] | None = Field(default=None, min_length=1, max_length=16)

    @model_validator(mode="after")
    def _one(self) -> FleetTarget:
        given = [name for name in ("device_ids", "attributes") if name in self.model_fields_set]
        if len(given) != 1 or getattr(self, given[0]) is None:
            raise ValueError("give exactly one of deviceIds and attributes")
        return self


class FleetCommandRequest(CommandRequest):
    """``POST /api/commands``."""

    target: FleetTarget


class BroadcastRequest(_Request):
    """``POST /api/broadcasts``."""

    name: str = Field(pattern=NAME_PATTERN)
    payload: Any = None
    ttl_seconds: JsonInt = Field(default=3600, ge=1, le=86400)
    group: str | None = Field(default=None, pattern=NAME_PATTERN)


class LateResponse(ApiModel):
    status: ResponseStatus
    received_at: datetime
    result: Any = None
    error: Any = None


class Command(ApiModel):
    command_id: str
    device_id: str
    name: str
    payload: Any = None
    status: Status
    created_at: datetime
    sent_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime
    result: Any = None
    error: Any = None
    idempotency_key: str | None = None
    job_id: str | None = None
    issued_by: str
    late_response: LateResponse | None = None

    def to_json_dict(self) -> dict[str, Any]:
        # ``payload`` is always sent (null when the command has none).
        return {**super().to_json_dict(), "payload": self.payload}


class CommandPage(ApiModel):
    items: list[Command]
    continuation_token: str | None = None


class FleetJob(ApiModel):
    job_id: str
    name: str
    total: int
    counts: dict[str, int] = Field(description="Targeted devices by their command's status; `queued` until the "
                                   "command is made, `failed` also when the device could not be commanded.")
    created_at: datetime
    issued_by: str
    target: dict[str, Any]
    fanout: Literal["running", "done"] = Field(description="`done` once no device is `queued`: every part of the "
                                               "fan-out has run.")


class Broadcast(ApiModel):
    broadcast_id: str
    name: str
    topic: str
    payload: Any = None
    published_at: datetime
    expires_at: datetime
    issued_by: str
    group: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {**super().to_json_dict(), "payload": self.payload}


class BroadcastPage(ApiModel):
    items: list[Broadcast]
    continuation_token: str | None = None


class CommandResponse(ApiModel):
    """What a device publishes on ``devices/{id}/commands/{commandId}/response``."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=False)

    command_id: str = Field(min_length=1, max_length=64)
    status: ResponseStatus
    result: Any = None
    error: Any = None
