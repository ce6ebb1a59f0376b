"""The device registry's resources: a device and its connection history."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.platform.models import ApiModel

DeviceStateName = Literal["Enabled", "Disabled", "Unknown"]


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


StateKind = Literal["Enabled", "Disabled", "deleted"]


class StateFact(BaseModel):
    """When the client was enabled, disabled or deleted (internal, not on the wire)."""

    model_config = ConfigDict(frozen=True)

    time: datetime
    kind: StateKind


class DeviceRecord(BaseModel):
    """A device's registry row: the public device and the internal facts it is derived from."""

    device: Device
    states: list[StateFact] = Field(default_factory=list)


class DevicePage(ApiModel):
    items: list[Device]
    continuation_token: str | None = None
