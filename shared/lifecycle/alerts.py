"""Alerts that a device's life cycle raises: troubling disconnection reasons and
flapping. Pure and deterministic: the same facts give the same alerts with the same
ids, so redeliveries, retries and any order of delivery converge on one set.

A client that an operator disabled or deleted is refused by the broker on purpose,
so its authentication and authorization refusals are *expected*: a refusal stamped
at ``t`` is expected when the client was disabled or deleted at some moment in
``[t, t + 60 s]`` (a refusal may be stamped a little before the disable that caused
it). Whether an alert should exist is a function of the device's facts alone, so
the service can re-decide it at any time and repair what a failure left behind.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.alerts.models import Alert, Severity
from shared.lifecycle.models import ConnectionRecord, DeviceRecord
from shared.lifecycle.presence import state_at
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
REASON_RULE = "disconnectionReason"
FLAPPING_RULE = "flapping"
# The broker refuses a client that an operator disabled or deleted: expected, no alert.
REFUSALS = frozenset({"ClientAuthenticationError", "ClientAuthorizationError"})
# How much earlier than the disable or delete a refusal may be stamped and still be its effect.
REFUSAL_SKEW = timedelta(seconds=60)


def refusal_expected(record: DeviceRecord, at: datetime) -> bool:
    """Whether the client was disabled or deleted at some moment in ``[at, at + skew]``."""
    current = state_at(record, at)
    if current is not None and current.kind != "Enabled":
        return True
    return any(f.kind != "Enabled" and at < f.time <= at + REFUSAL_SKEW for f in record.states)


def reason_alert(device_id: str, disconnect: ConnectionRecord, now: datetime) -> Alert | None:
    """The alert a troubling disconnection reason raises, expected or not."""
    reason = disconnect.reason or ""
    if disconnect.kind != "disconnected" or reason not in TROUBLE_REASONS:
        return None
    severity, text = TROUBLE_REASONS[reason]
    return Alert(
        alert_id=stable_id(device_id, REASON_RULE, str(disconnect.sequence_number), disconnect.session_name or "",
                           disconnect.time.isoformat()),
        device_id=device_id, rule=REASON_RULE, severity=severity, stream="lifecycle",
        message=f"device {device_id!r} {text} ({reason})", value=reason, timestamp=disconnect.time, raised_at=now,
    )


def is_refusal(alert: Alert) -> bool:
    return alert.rule == REASON_RULE and alert.value in REFUSALS


def wanted(record: DeviceRecord, alert: Alert) -> bool:
    """Whether ``alert`` should exist given the device's facts."""
    return not (is_refusal(alert) and refusal_expected(record, alert.timestamp))


def flapping_alerts(record: DeviceRecord, disconnect: ConnectionRecord, *, disconnects: int, window_seconds: int,
                    now: datetime) -> list[Alert]:
    """Flapping alerts that ``disconnect`` completes: every window that ends at one of
    the history's disconnects and holds ``disconnects`` of them, whichever arrived last.
    One alert per device and aligned window: its start names it."""
    window = timedelta(seconds=window_seconds)
    times = sorted({r.time for r in record.device.connection_history if r.kind == "disconnected"})
    alerts: dict[str, Alert] = {}
    for end in times:
        if not disconnect.time <= end < disconnect.time + window:
            continue  # a window this disconnect is not in
        count = sum(1 for t in times if end - window < t <= end)
        if count < disconnects:
            continue
        start = int(end.timestamp()) // window_seconds * window_seconds
        alert_id = stable_id(record.device.device_id, FLAPPING_RULE, str(start))
        window_start = datetime.fromtimestamp(start, UTC)
        alerts[alert_id] = Alert(
            alert_id=alert_id, device_id=record.device.device_id, rule=FLAPPING_RULE, severity="warning",
            stream="lifecycle",
            message=(f"device {record.device.device_id!r} disconnected {count} times within {window_seconds} s "
                     f"(window from {window_start.isoformat()})"),
            value=count, timestamp=window_start, raised_at=now,
        )
    return list(alerts.values())
