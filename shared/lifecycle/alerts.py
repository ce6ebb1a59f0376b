"""Alerts that a device's life cycle raises: troubling disconnection reasons and
flapping. Pure and deterministic: the same event and history give the same alerts
with the same ids, so redeliveries and retries never duplicate an alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.alerts.models import Alert, Severity
from shared.lifecycle.events import LifecycleEvent
from shared.lifecycle.models import Device
from shared.platform.keys import stable_id

# Disconnection reasons that mean something is wrong with the client, its
# credentials or the namespace's limits (not a network blip or a clean close).
TROUBLE_REASONS: dict[str, tuple[Severity, str]] = {
    "ClientAuthenticationError": (
        "critical", "failed authentication (certificate expired, client disabled or changed)"),
    "ClientAuthorizationError": ("critical", "was refused by authorization (topic spaces, permission bindings)"),
    "IpForbidden": ("critical", "connected from an IP address that the namespace forbids"),
    "QuotaExceeded": ("warning", "exceeded a throttling limit of the namespace"),
    "SessionOverflow": ("warning", "overflowed its session's queue"),
}
# The broker refuses a client that an operator disabled or deleted: expected, no alert.
REFUSALS = frozenset({"ClientAuthenticationError", "ClientAuthorizationError"})
# How much earlier than the disable or delete a refusal may be stamped and still be its effect.
REFUSAL_SKEW = timedelta(seconds=60)


def refusals_expected_since(device: Device) -> datetime | None:
    """From when this client's refusals are expected, if it is disabled or deleted."""
    times = []
    if device.deleted and device.deleted_at is not None:
        times.append(device.deleted_at)
    if device.state == "Disabled" and device.updated_on is not None:
        times.append(device.updated_on)
    return min(times) - REFUSAL_SKEW if times else None


def lifecycle_alerts(
    device: Device, event: LifecycleEvent, *, flapping_disconnects: int, flapping_window_seconds: int, now: datetime
) -> list[Alert]:
    """Alerts for ``event`` given the device state after it was applied."""
    if event.kind != "disconnected":
        return []
    alerts = []
    reason = event.disconnection_reason or ""
    expected_since = refusals_expected_since(device)
    expected = reason in REFUSALS and expected_since is not None and event.event_time >= expected_since
    if reason in TROUBLE_REASONS and not expected:
        severity, text = TROUBLE_REASONS[reason]
        alerts.append(Alert(
            alert_id=stable_id(event.device_id, "disconnectionReason", str(event.sequence_number),
                               event.session_name or ""),
            device_id=event.device_id, rule="disconnectionReason", severity=severity, stream="lifecycle",
            message=f"device {event.device_id!r} {text} ({reason})", value=reason,
            timestamp=event.event_time, raised_at=now,
        ))
    window = timedelta(seconds=flapping_window_seconds)
    recent = [r for r in device.connection_history
              if r.kind == "disconnected" and event.event_time - window < r.time <= event.event_time]
    if len(recent) >= flapping_disconnects:
        # One alert per device and window: the window's start is its time, so every
        # disconnect in the burst, in any order, names the same alert.
        start = int(event.event_time.timestamp()) // flapping_window_seconds * flapping_window_seconds
        window_start = datetime.fromtimestamp(start, UTC)
        alerts.append(Alert(
            alert_id=stable_id(event.device_id, "flapping", str(start)),
            device_id=event.device_id, rule="flapping", severity="warning", stream="lifecycle",
            message=(f"device {event.device_id!r} disconnected {len(recent)} times "
                     f"within {flapping_window_seconds} s (window from {window_start.isoformat()})"),
            value=len(recent), timestamp=window_start, raised_at=now,
        ))
    return alerts
