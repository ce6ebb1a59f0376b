"""How one life cycle event changes a device's registry entry: a pure function.

Event Grid delivers at least once and in no particular order, so each kind of fact
has its own clock:

* presence (connected, session) by ``sequenceNumber``: a connect applies when its
  number is greater than the stored one, a disconnect when greater or equal (a
  session's connect and disconnect share a number); the last connect and the last
  disconnect (with its reason) are the latest by event time;
* client metadata (state, attributes) by ``updatedOn``: applied when not older;
* deletion by event time against ``updatedOn``: a delete marks the device deleted
  unless the client was updated after it; a create or update newer than the
  delete revives it. When the client was re-created (``createdOn`` after the
  delete), its sequence numbers start again, so presence restarts from zero and
  session events from before ``createdOn`` are ignored.

Every session event, applied or not, is kept in a short history (deduplicated,
ordered by time) for flapping detection and for operators.
"""

from __future__ import annotations

from shared.lifecycle.events import LifecycleEvent
from shared.lifecycle.models import ConnectionRecord, Device

HISTORY_LIMIT = 20


def apply_event(device: Device | None, event: LifecycleEvent, history_limit: int = HISTORY_LIMIT) -> Device:
    """The device after ``event``; ``device`` is not modified."""
    current = device.model_copy(deep=True) if device else Device(device_id=event.device_id)
    if event.kind in ("connected", "disconnected"):
        _apply_session(current, event, history_limit)
    elif event.kind == "createdOrUpdated":
        _apply_metadata(current, event)
    else:
        _apply_delete(current, event)
    return current


def _apply_session(device: Device, event: LifecycleEvent, history_limit: int) -> None:
    if device.created_on is not None and event.event_time < device.created_on:
        return  # from an earlier incarnation of a re-created client
    record = ConnectionRecord(
        kind="connected" if event.kind == "connected" else "disconnected",
        sequence_number=event.sequence_number or 0,
        session_name=event.session_name,
        time=event.event_time,
        reason=event.disconnection_reason,
    )
    _remember(device, record, history_limit)
    _apply_presence(device, record)


def _apply_presence(device: Device, record: ConnectionRecord) -> None:
    # The last connect and disconnect are facts of their own, the latest by time,
    # even when an older session's event no longer changes presence.
    if record.kind == "connected":
        if device.last_connected_at is None or record.time > device.last_connected_at:
            device.last_connected_at = record.time
    elif device.last_disconnected_at is None or record.time > device.last_disconnected_at:
        device.last_disconnected_at = record.time
        device.disconnection_reason = record.reason
    stored = device.sequence_number
    if record.kind == "connected" and (stored is None or record.sequence_number > stored):
        device.connected = True
        device.session_name = record.session_name
        device.sequence_number = record.sequence_number
    elif record.kind == "disconnected" and (stored is None or record.sequence_number >= stored):
        device.connected = False
        device.session_name = record.session_name or device.session_name
        device.sequence_number = record.sequence_number


def _remember(device: Device, record: ConnectionRecord, history_limit: int) -> None:
    if record in device.connection_history:
        return  # a redelivery
    history = [*device.connection_history, record]
    history.sort(key=lambda r: (r.time, r.sequence_number, r.kind == "disconnected"))
    device.connection_history = history[-history_limit:]


def _apply_metadata(device: Device, event: LifecycleEvent) -> None:
    assert event.updated_on is not None  # guaranteed by parsing
    if device.updated_on is not None and event.updated_on < device.updated_on:
        return
    device.state = event.state or device.state
    device.attributes = event.attributes
    device.created_on = event.created_on or device.created_on
    device.updated_on = event.updated_on
    if device.deleted and (device.deleted_at is None or event.updated_on > device.deleted_at):
        device.deleted = False
        if device.created_on is not None and device.deleted_at is not None and device.created_on > device.deleted_at:
            _restart_presence(device)


def _restart_presence(device: Device) -> None:
    """A re-created client: presence is rebuilt from the new incarnation's sessions
    alone, including those that arrived before the create event."""
    created_on = device.created_on
    assert created_on is not None
    device.sequence_number = None
    device.connected = False
    device.session_name = None
    device.connection_history = [r for r in device.connection_history if r.time >= created_on]
    for record in device.connection_history:
        _apply_presence(device, record)


def _apply_delete(device: Device, event: LifecycleEvent) -> None:
    if device.updated_on is not None and event.event_time < device.updated_on:
        return  # the client was updated (re-created) after this delete
    device.deleted = True
    if device.deleted_at is None or event.event_time > device.deleted_at:
        device.deleted_at = event.event_time
