"""The device registry's resources: a device and its connection history."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

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


class DevicePage(ApiModel):
    items: list[Device]
    continuation_token: str | None = None
