"""How life cycle events make a device's registry entry: pure functions.

Event Grid delivers at least once and in no order, so the entry is not edited event
by event; it is *derived* from the facts seen so far, and the facts are kept as sets
(deduplicated, ordered by time, bounded to the newest). Any order and any number of
deliveries of the same events therefore end in the same entry:

* session events (connects and disconnects) are kept as the connection history; the
  client's current incarnation starts at its ``createdOn`` (a re-created client's
  sequence numbers start again), and presence is the incarnation's session event
  with the highest ``sequenceNumber``, a disconnect winning over the connect with
  the same number (a session's connect and disconnect share one);
* ``lastConnectedAt`` and ``lastDisconnectedAt`` (with its reason) are the latest by
  event time, whichever incarnation or session they belong to;
* client metadata (state, attributes, createdOn, updatedOn) is the newest by
  ``updatedOn``;
* enable, disable and delete facts form a timeline; the device is deleted when the
  timeline's latest fact is a delete (a delete wins a tie), so a create or update
  newer than the delete revives it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import orjson

from shared.lifecycle.events import LifecycleEvent
from shared.lifecycle.models import ConnectionRecord, Device, DeviceRecord, StateFact

HISTORY_LIMIT = 20
TIMELINE_LIMIT = 20
_STATE_RANK = {"Enabled": 0, "Disabled": 1, "deleted": 2}


def apply_event(record: DeviceRecord | None, event: LifecycleEvent) -> DeviceRecord:
    """The entry after ``event``; ``record`` is not modified."""
    device = record.device.model_copy(deep=True) if record else Device(device_id=event.device_id)
    states = list(record.states) if record else []
    if event.kind in ("connected", "disconnected"):
        _add_session(device, ConnectionRecord(
            kind="connected" if event.kind == "connected" else "disconnected",
            sequence_number=event.sequence_number or 0, session_name=event.session_name,
            time=event.event_time, reason=event.disconnection_reason,
        ))
    elif event.kind == "createdOrUpdated":
        assert event.updated_on is not None and event.state is not None  # guaranteed by parsing
        _add_metadata(device, event)
        states = _newest(states, StateFact(time=event.updated_on, kind=event.state))
    else:
        if device.deleted_at is None or event.event_time > device.deleted_at:
            device.deleted_at = event.event_time
        states = _newest(states, StateFact(time=event.event_time, kind="deleted"))
    _derive_presence(device)
    device.deleted = bool(states) and _latest(states).kind == "deleted"
    return DeviceRecord(device=device, states=states)


def _fact_key(fact: StateFact) -> tuple[datetime, int]:
    return fact.time, _STATE_RANK[fact.kind]


def _newest(states: list[StateFact], fact: StateFact) -> list[StateFact]:
    if fact in states:
        return states
    return sorted([*states, fact], key=_fact_key)[-TIMELINE_LIMIT:]


def _latest(states: Iterable[StateFact]) -> StateFact:
    return max(states, key=_fact_key)


def state_at(record: DeviceRecord, moment: datetime) -> StateFact | None:
    """The timeline's fact in force at ``moment`` (None before the first one known)."""
    earlier = [f for f in record.states if f.time <= moment]
    return _latest(earlier) if earlier else None


def _record_key(r: ConnectionRecord) -> tuple[datetime, int, bool, str, str]:
    return r.time, r.sequence_number, r.kind == "disconnected", r.session_name or "", r.reason or ""


def _add_session(device: Device, record: ConnectionRecord) -> None:
    if record.kind == "connected":
        if device.last_connected_at is None or record.time > device.last_connected_at:
            device.last_connected_at = record.time
    elif device.last_disconnected_at is None or (record.time, record.reason or "") > (
            device.last_disconnected_at, device.disconnection_reason or ""):
        device.last_disconnected_at = record.time
        device.disconnection_reason = record.reason
    if record not in device.connection_history:
        history = sorted([*device.connection_history, record], key=_record_key)
        device.connection_history = history[-HISTORY_LIMIT:]


def _metadata_key(device: Device) -> tuple[datetime | None, int, bytes]:
    # Two updates stamped alike are ordered by their content, never by arrival: a
    # disable wins over an enable, then the attributes' canonical JSON decides.
    return (device.updated_on, _STATE_RANK.get(device.state, -1),
            orjson.dumps(device.attributes, option=orjson.OPT_SORT_KEYS))


def _add_metadata(device: Device, event: LifecycleEvent) -> None:
    candidate = device.model_copy(update={"state": event.state, "attributes": event.attributes,
                                          "created_on": event.created_on or device.created_on,
                                          "updated_on": event.updated_on})
    if device.updated_on is None or _metadata_key(candidate) > _metadata_key(device):
        device.state, device.attributes = candidate.state, candidate.attributes
        device.created_on, device.updated_on = candidate.created_on, candidate.updated_on


def _derive_presence(device: Device) -> None:
    """Presence from the current incarnation's session events, whatever came first."""
    start = device.created_on
    current = [r for r in device.connection_history if start is None or r.time >= start]
    if not current:
        device.connected, device.session_name, device.sequence_number = False, None, None
        return
    top = max(current, key=lambda r: (r.sequence_number, r.kind == "disconnected", r.time, r.session_name or ""))
    device.connected = top.kind == "connected"
    device.session_name = top.session_name
    device.sequence_number = top.sequence_number
