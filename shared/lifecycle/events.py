"""Decoding Event Grid MQTT client life cycle events into one typed form.

Both delivery schemas arrive as objects of the azure-functions library:
``func.EventGridEvent`` (Event Grid schema) and ``func.CloudEvent`` (CloudEvents
1.0). Field names follow the Azure docs, "MQTT Clients Life Cycle Events".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from shared.platform.errors import InvalidInput, validate
from shared.platform.keys import validate_device_id
from shared.platform.models import Timestamp
from shared.platform.timestamps import check_timestamp

# A registry row keeps the device in one Table property of at most 64 KiB.
MAX_ATTRIBUTES_BYTES = 16 * 1024

_PREFIX = "Microsoft.EventGrid."
EVENT_KINDS: dict[str, str] = {
    f"{_PREFIX}MQTTClientSessionConnected": "connected",
    f"{_PREFIX}MQTTClientSessionDisconnected": "disconnected",
    f"{_PREFIX}MQTTClientCreatedOrUpdated": "createdOrUpdated",
    f"{_PREFIX}MQTTClientDeleted": "deleted",
}

EventKind = Literal["connected", "disconnected", "createdOrUpdated", "deleted"]


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore")
    clientAuthenticationName: StrictStr  # noqa: N815 - the wire name


class _SessionData(_Data):
    clientSessionName: StrictStr | None = Field(default=None, max_length=512)  # noqa: N815
    sequenceNumber: StrictInt = Field(ge=0, lt=2**63)  # noqa: N815


class _DisconnectedData(_SessionData):
    disconnectionReason: StrictStr | None = Field(default=None, max_length=256)  # noqa: N815


class _ClientData(_Data):
    state: Literal["Enabled", "Disabled"]
    attributes: dict[str, Any] = Field(default_factory=dict)
    createdOn: Timestamp | None = None  # noqa: N815
    updatedOn: Timestamp  # noqa: N815


_DATA_MODELS: dict[str, type[_Data]] = {
    "connected": _SessionData,
    "disconnected": _DisconnectedData,
    "createdOrUpdated": _ClientData,
    "deleted": _Data,
}


class LifecycleEvent(BaseModel):
    """One life cycle event, whatever schema it came in."""

    model_config = ConfigDict(frozen=True)

    kind: EventKind
    event_id: str
    event_type: str
    device_id: str
    event_time: datetime
    session_name: str | None = None
    sequence_number: int | None = None
    disconnection_reason: str | None = None
    state: Literal["Enabled", "Disabled"] | None = None
    attributes: dict[str, Any] | None = None
    created_on: datetime | None = None
    updated_on: datetime | None = None


def envelope_fields(event: Any) -> tuple[str | None, str | None, datetime | None, str | None]:
    """(id, type, time, subject) of either schema's function object."""
    if hasattr(event, "event_type"):  # func.EventGridEvent
        return event.id, event.event_type, event.event_time, event.subject
    return event.id, event.type, event.time, event.subject  # func.CloudEvent


def envelope_json(event: Any) -> dict[str, Any]:
    """The event as its JSON document, for dead letters and logs."""
    event_id, event_type, event_time, subject = envelope_fields(event)
    time = event_time.isoformat() if event_time else None
    if hasattr(event, "event_type"):
        return {"id": event_id, "topic": event.topic, "subject": subject, "eventType": event_type,
                "eventTime": time, "dataVersion": event.data_version, "data": event.get_json()}
    return {"specversion": event.specversion, "id": event_id, "source": event.source, "type": event_type,
            "time": time, "subject": subject, **event.extension_attrs, "data": event.get_json()}


def parse_lifecycle_event(event: Any) -> LifecycleEvent:
    """Validate a function's Event Grid object; raise InvalidInput with the reason."""
    event_id, event_type, event_time, _subject = envelope_fields(event)
    if not event_id:
        raise InvalidInput("event has no id")
    kind = EVENT_KINDS.get(event_type or "")
    if kind is None:
        raise InvalidInput(f"unsupported event type {event_type!r}")
    if event_time is None:
        raise InvalidInput("event has no time, so it cannot be ordered")
    event_time = check_timestamp(event_time, field="event time")
    data = event.get_json()
    if not isinstance(data, dict):
        raise InvalidInput("event data is not a JSON object")
    fields = validate(_DATA_MODELS[kind], data, what=f"{event_type} data")
    device_id = validate_device_id(fields.clientAuthenticationName)
    common: dict[str, Any] = {"kind": kind, "event_id": event_id, "event_type": event_type,
                              "device_id": device_id, "event_time": event_time}
    if isinstance(fields, _SessionData):
        common.update(session_name=fields.clientSessionName, sequence_number=fields.sequenceNumber)
    if isinstance(fields, _DisconnectedData):
        common.update(disconnection_reason=fields.disconnectionReason)
    if isinstance(fields, _ClientData):
        size = len(orjson.dumps(fields.attributes))
        if size > MAX_ATTRIBUTES_BYTES:
            raise InvalidInput(f"client attributes are {size} bytes of JSON, more than the {MAX_ATTRIBUTES_BYTES} "
                               "that a registry entry keeps")
        common.update(state=fields.state, attributes=fields.attributes,
                      created_on=fields.createdOn, updated_on=fields.updatedOn)
    return LifecycleEvent(**common)
