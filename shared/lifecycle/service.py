"""Handling of one MQTT client life cycle event, end to end.

The registry write comes first; then the device's alerts are made to agree with its
facts. That second step is re-run in full by any redelivery and by every later
metadata event, and a refusal alert is checked against the device once more after
it is written, so a disable that raced with the refusal, or a retraction that
failed, still ends with the alerts that the facts call for.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.alerts.models import Alert
from shared.alerts.store import AlertStore
from shared.lifecycle.alerts import (
    REASON_RULE,
    flapping_alerts,
    is_refusal,
    reason_alert,
    wanted,
)
from shared.lifecycle.events import LifecycleEvent, envelope_fields, envelope_json, parse_lifecycle_event
from shared.lifecycle.models import ConnectionRecord, DeviceRecord
from shared.lifecycle.registry import DeviceRegistry
from shared.lifecycle.settings import LifecycleSettings
from shared.platform import metrics
from shared.platform.deadletter import write_dead_letter
from shared.platform.errors import InvalidInput, is_transient
from shared.platform.settings import settings_of
from shared.platform.storage import DataStore, data_store

log = logging.getLogger(__name__)


async def handle_lifecycle_event(event: Any) -> DeviceRecord | None:
    """Apply ``event`` (``func.EventGridEvent`` or ``func.CloudEvent``) to the registry
    and its alerts. An event that can never be applied (invalid, or refused by
    storage for what it is) is dead-lettered; a transient storage failure raises, so
    that Event Grid retries."""
    from azure.core.exceptions import AzureError

    settings = settings_of(LifecycleSettings)
    store = data_store()
    now = datetime.now(UTC)
    try:
        parsed = parse_lifecycle_event(event)
        return await _apply(store, parsed, settings, now)
    except InvalidInput as exc:
        await _dead_letter(store, event, exc.reason, exc.errors, now)
        return None
    except AzureError as exc:
        if is_transient(exc):
            raise
        status = getattr(exc, "status_code", None)
        log.exception("storage refused a life cycle event's write (%s)", status)
        await _dead_letter(store, event, f"storage refused the write (HTTP {status}, {type(exc).__name__})", [], now)
        return None


async def _dead_letter(store: DataStore, event: Any, reason: str, errors: list[dict[str, Any]],
                       now: datetime) -> None:
    event_id, event_type, event_time, subject = envelope_fields(event)
    log.warning("dead-lettering life cycle event %s (%s): %s", event_id, event_type, reason)
    day = event_time if event_time is not None and event_time.tzinfo is not None else now
    await write_dead_letter(
        store, stream="lifecycle", reason=reason, errors=errors,
        body=orjson.dumps(envelope_json(event), default=str),
        origin={"eventGrid": {"id": event_id, "eventType": event_type, "subject": subject}},
        day=day, received_at=now,
    )
    reason_class = metrics.reason_class(reason, errors)
    metrics.record(metrics.DEAD_LETTERED, 1, stream="lifecycle", partition="", reason=reason_class)


async def _apply(store: DataStore, event: LifecycleEvent, settings: LifecycleSettings,
                 now: datetime) -> DeviceRecord:
    registry, alerts = DeviceRegistry(store), AlertStore(store)
    before, record = await registry.apply(event)
    if before is None or before.device != record.device:  # a redelivery changes nothing: not counted again
        metrics.record(metrics.LIFECYCLE, 1, kind=event.kind)
    if event.kind == "disconnected":
        disconnect = next((r for r in record.device.connection_history if _is(r, event)), None)
        if disconnect is None:
            return record  # older than the whole history: nothing left to decide
        candidates = flapping_alerts(record, disconnect, disconnects=settings.flapping_disconnects,
                                     window_seconds=settings.flapping_window_seconds, now=now)
        reason = reason_alert(event.device_id, disconnect, now)
        candidates += [reason] if reason else []
    elif event.kind in ("createdOrUpdated", "deleted"):
        # Whether a refusal was expected may have changed: every refusal the device's
        # history or the store knows is decided again.
        stored = await alerts.of_device(event.device_id, rule=REASON_RULE)
        from_history = [reason_alert(event.device_id, r, now) for r in record.device.connection_history]
        # The store's copy first: it keeps its first raisedAt.
        unique = {a.alert_id: a for a in [*from_history, *stored] if a is not None and is_refusal(a)}
        candidates = list(unique.values())
    else:
        return record
    await _reconcile(registry, alerts, record, candidates)
    return record


def _is(record: ConnectionRecord, event: LifecycleEvent) -> bool:
    return (record.kind == "disconnected" and record.sequence_number == event.sequence_number
            and record.time == event.event_time and record.session_name == event.session_name
            and record.reason == event.disconnection_reason)


async def _reconcile(registry: DeviceRegistry, alerts: AlertStore, record: DeviceRecord,
                     candidates: list[Alert]) -> None:
    """Make the store hold exactly the candidates the device's facts want."""
    keep = [a for a in candidates if wanted(record, a)]
    drop = [a for a in candidates if not wanted(record, a)]
    for alert in await alerts.add(keep):
        log.warning("alert %s on %r: %s", alert.rule, alert.device_id, alert.message)
    await alerts.remove(drop)
    for alert in drop:
        log.info("no alert %s on %r: the client was disabled or deleted", alert.rule, alert.device_id)
    if any(is_refusal(a) for a in keep):
        # A disable written concurrently may have looked for this alert before it
        # existed: look at the device again now that it does.
        fresh = await registry.record(record.device.device_id)
        if fresh is not None:
            await alerts.remove([a for a in keep if not wanted(fresh, a)])
