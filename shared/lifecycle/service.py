"""Handling of one MQTT client life cycle event, end to end."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.alerts.store import AlertStore
from shared.lifecycle.alerts import REFUSALS, lifecycle_alerts, refusals_expected_since
from shared.lifecycle.events import envelope_fields, envelope_json, parse_lifecycle_event
from shared.lifecycle.registry import DeviceRegistry
from shared.lifecycle.settings import LifecycleSettings
from shared.platform.deadletter import write_dead_letter
from shared.platform.errors import InvalidInput
from shared.platform.settings import settings_of
from shared.platform.storage import data_store

log = logging.getLogger(__name__)


async def handle_lifecycle_event(event: Any) -> None:
    """Apply ``event`` (``func.EventGridEvent`` or ``func.CloudEvent``) to the registry
    and raise its alerts. An event that can never be applied is dead-lettered; a
    storage failure raises, so that Event Grid retries."""
    settings = settings_of(LifecycleSettings)
    store = data_store()
    now = datetime.now(UTC)
    try:
        parsed = parse_lifecycle_event(event)
    except InvalidInput as exc:
        event_id, event_type, event_time, subject = envelope_fields(event)
        log.warning("dead-lettering life cycle event %s (%s): %s", event_id, event_type, exc.reason)
        await write_dead_letter(
            store, stream="lifecycle", reason=exc.reason, errors=exc.errors,
            body=orjson.dumps(envelope_json(event), default=str),
            origin={"eventGrid": {"id": event_id, "eventType": event_type, "subject": subject}},
            day=event_time or now, received_at=now,
        )
        return
    before, device = await DeviceRegistry(store).apply(parsed)
    alert_store = AlertStore(store)
    expected_since = refusals_expected_since(device)
    if expected_since is not None and (before is None or refusals_expected_since(before) != expected_since):
        # Disabled or deleted just now: refusals already alerted (they arrived
        # first) were the operator's doing, not trouble.
        for alert in await alert_store.retract(parsed.device_id, rule="disconnectionReason", values=REFUSALS,
                                               since=expected_since, now=now):
            log.warning("retracted alert %s on %r: the client was disabled or deleted", alert.rule, alert.device_id)
    alerts = lifecycle_alerts(
        device, parsed, flapping_disconnects=settings.flapping_disconnects,
        flapping_window_seconds=settings.flapping_window_seconds, now=now,
    )
    for alert in await alert_store.add(alerts):
        log.warning("alert %s on %r: %s", alert.rule, alert.device_id, alert.message)
