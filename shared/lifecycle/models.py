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


class LatestTelemetry(ApiModel):
    """The newest value of each metric the device sent, and when the newest came."""

    timestamp: datetime
    metrics: dict[str, bool | int | float | str]


class LatestDetection(ApiModel):
    label: str
    confidence: float = Field(ge=0, le=1)
    bbox: list[float] | None = Field(default=None, min_length=4, max_length=4)


class LatestInference(ApiModel):
    """A model's newest result on the device (its first 100 detections)."""

    version: str
    timestamp: datetime
    inference_id: str
    latency_ms: float | None = None
    frame_id: str | None = None
    detections: list[LatestDetection]


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
    telemetry: LatestTelemetry | None = Field(default=None, description="Only from get_device.")
    inference: dict[str, LatestInference] | None = Field(
        default=None, description="Per model name; only from get_device.")


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
    # Commands wait for this device to connect (set by shared.commands, cleared once
    # they are delivered); kept on the registry row so that a connect without
    # pending commands costs no extra read.
    pending_commands: bool = False


class DevicePage(ApiModel):
    items: list[Device]
    continuation_token: str | None = None
