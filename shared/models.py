"""The API's resources as pydantic models: camelCase on the wire, one source for
the handlers and the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

DeviceStateName = Literal["Enabled", "Disabled", "Unknown"]
Severity = Literal["info", "warning", "critical"]


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form: camelCase, absent optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ConnectionRecord(ApiModel):
    """One session event in a device's short connection history."""

    kind: Literal["connected", "disconnected"]
    sequence_number: int
    session_name: str | None = None
    time: datetime
    reason: str | None = None


class Device(ApiModel):
    device_id: str
    state: DeviceStateName = "Unknown"
    deleted: bool = False
    connected: bool = False
    session_name: str | None = None
    last_connected_at: datetime | None = None
    last_disconnected_at: datetime | None = None
    disconnection_reason: str | None = None
    sequence_number: int | None = Field(
        default=None, description="Sequence number of the last session event applied to presence."
    )
    attributes: dict[str, Any] | None = None
    created_on: datetime | None = None
    updated_on: datetime | None = None
    deleted_at: datetime | None = None
    connection_history: list[ConnectionRecord] = Field(default_factory=list)
    telemetry: dict[str, Any] | None = None
    inference: dict[str, Any] | None = None


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


class DevicePage(ApiModel):
    items: list[Device]
    continuation_token: str | None = None


class AlertList(ApiModel):
    items: list[Alert]


class Health(ApiModel):
    status: Literal["ok", "degraded"]
    version: str
    checks: dict[str, str]


class Problem(ApiModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None
