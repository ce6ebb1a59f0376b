"""Properties: whatever the order and number of deliveries of a device's life cycle
events, across incarnations (create, sessions, delete, re-create, sessions), the
registry ends in one entry, the one the facts define; and the device's alerts end
as the facts define them, whatever the order of refusals, disables and enables."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.lifecycle.events import parse_lifecycle_event
from shared.lifecycle.models import DeviceRecord
from shared.lifecycle.presence import apply_event
from standins import event_factory as ev
from tests.support.harness import deliver, http_request, json_of, user_function

T0 = (datetime.now(UTC) - timedelta(days=10)).replace(hour=0, minute=0, second=0, microsecond=0)
DEVICE = "prop-device"


@dataclass(frozen=True)
class Incarnation:
    """One life of a client: created, some sessions, some updates, perhaps deleted."""

    closed: list[bool]  # per session: did it disconnect?
    update_minutes: list[int]  # later updates, minutes after the create
    states: list[str]  # the state each update sets
    announce_create: bool  # False: only a later update tells the createdOn (Event Grid coalesces)
    deleted: bool


incarnations = st.builds(
    Incarnation,
    closed=st.lists(st.booleans(), max_size=6),
    update_minutes=st.lists(st.integers(min_value=1, max_value=300), max_size=3, unique=True),
    states=st.lists(st.sampled_from(["Enabled", "Disabled"]), min_size=3, max_size=3),
    announce_create=st.booleans(),
    deleted=st.booleans(),
)


def created(index: int) -> datetime:
    return T0 + timedelta(days=index)


def story(device_id: str, lives: list[Incarnation]) -> list[dict[str, Any]]:
    """The events of ``lives``, in the order they happened."""
    documents: list[dict[str, Any]] = []
    for index, life in enumerate(lives):
        born = created(index)
        updates = [(born, "Enabled")] if life.announce_create or not life.update_minutes else []
        updates += [(born + timedelta(minutes=m), s) for m, s in zip(life.update_minutes, life.states, strict=False)]
        for at, state in updates:
            documents.append(ev.created_or_updated(device_id, at, created_on=born, state=state,
                                                   attributes={"life": index, "at": at.isoformat()}))
        for seq, was_closed in enumerate(life.closed, start=1):
            at = born + timedelta(minutes=10 * seq)
            documents.append(ev.connected(device_id, seq, at, session=f"l{index}s{seq}"))
            if was_closed:
                documents.append(ev.disconnected(device_id, seq, at + timedelta(minutes=5),
                                                 session=f"l{index}s{seq}", reason="ConnectionLost"))
        if life.deleted:
            documents.append(ev.deleted(device_id, born + timedelta(hours=6)))
    return sorted(documents, key=lambda d: d["eventTime"])


def expected(lives: list[Incarnation]) -> dict[str, Any]:
    """The entry the facts define: the last incarnation's presence and state."""
    index, last = len(lives) - 1, lives[-1]
    sessions = len(last.closed)
    want: dict[str, Any] = {"deleted": last.deleted, "createdOn": _z(created(index))}
    if sessions:
        want |= {"connected": not last.closed[-1], "sequenceNumber": sessions, "sessionName": f"l{index}s{sessions}"}
    else:
        want |= {"connected": False, "sequenceNumber": None, "sessionName": None}
    connects = [created(i) + timedelta(minutes=10 * len(life.closed)) for i, life in enumerate(lives) if life.closed]
    want["lastConnectedAt"] = _z(max(connects)) if connects else None
    return want


def _z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def deliveries(documents: list[dict[str, Any]]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Every event at least once, some more than once, in any order."""
    return st.lists(st.sampled_from(documents), max_size=len(documents)).flatmap(
        lambda extra: st.permutations(documents + extra))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Incarnation], list[dict[str, Any]], list[dict[str, Any]]]:
    lives = draw(st.lists(incarnations, min_size=1, max_size=3))
    documents = story(DEVICE, lives)
    return lives, documents, draw(deliveries(documents))


def fold(documents: list[dict[str, Any]]) -> DeviceRecord:
    record: DeviceRecord | None = None
    for document in documents:
        record = apply_event(record, parse_lifecycle_event(ev.to_function_event(document)))
    assert record is not None
    return record


@given(scenarios())
@settings(max_examples=400, deadline=None)
def test_any_order_of_any_incarnations_events_ends_in_one_entry(
        scenario: tuple[list[Incarnation], list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    lives, in_order, delivered = scenario
    record = fold(delivered)
    assert record == fold(in_order), "the entry depends only on the events, not on their order or duplicates"
    state = record.device.to_json_dict()
    want = expected(lives)
    assert {k: state.get(k) for k in want} == want


def test_a_recreated_clients_presence_does_not_stick_to_the_old_sequence_numbers() -> None:
    """The review's case: create, sessions 1-3, re-create (no delete seen before it),
    a delete stamped before the re-create, then the new client's first connect."""
    t_c = T0 + timedelta(hours=3)
    documents = [ev.created_or_updated(DEVICE, T0)]
    for seq in (1, 2, 3):
        documents += [ev.connected(DEVICE, seq, T0 + timedelta(minutes=10 * seq)),
                      ev.disconnected(DEVICE, seq, T0 + timedelta(minutes=10 * seq + 5))]
    documents += [ev.created_or_updated(DEVICE, t_c, created_on=t_c), ev.deleted(DEVICE, t_c - timedelta(minutes=1)),
                  ev.connected(DEVICE, 1, t_c + timedelta(minutes=1), session="fresh")]
    device = fold(documents).device
    assert (device.connected, device.sequence_number, device.session_name, device.deleted) == (
        True, 1, "fresh", False)
    assert fold(documents[::-1]) == fold(documents)


@pytest.mark.usefixtures("app_env")
@given(scenarios())
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_stored_entry_is_the_one_the_facts_define(
        run: Any, scenario: tuple[list[Incarnation], list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    lives, _, delivered = scenario
    device_id = f"prop-{uuid.uuid4().hex[:10]}"
    deliver(run, *(_renamed(d, device_id) for d in delivered))
    response = run(user_function("get_device")(
        http_request("GET", f"devices/{device_id}", route_params={"deviceId": device_id})))
    state = json_of(response)
    want = expected(lives)
    assert {k: state.get(k) for k in want} == want


# Alerts: a refusal at minute 30; the client disabled, re-enabled or deleted around it.
REFUSAL_AT = T0 + timedelta(minutes=30)
state_changes = st.lists(
    st.tuples(st.sampled_from(["Disabled", "Enabled", "deleted"]), st.integers(min_value=-40, max_value=120)),
    max_size=3, unique_by=lambda change: change[1])


def alert_story(device_id: str, changes: list[tuple[str, int]]) -> list[dict[str, Any]]:
    documents = [ev.created_or_updated(device_id, T0, state="Enabled"), ev.connected(device_id, 1, T0),
                 ev.disconnected(device_id, 1, REFUSAL_AT, reason="ClientAuthenticationError")]
    for kind, minute in changes:
        at = REFUSAL_AT + timedelta(minutes=minute)
        documents.append(ev.deleted(device_id, at) if kind == "deleted"
                         else ev.created_or_updated(device_id, at, created_on=T0, state=kind))
    return documents


def refusal_expected(changes: list[tuple[str, int]]) -> bool:
    """Disabled or deleted at some moment within the minute after the refusal."""
    rank = {"Enabled": 0, "Disabled": 1, "deleted": 2}  # a tie goes to the later in this order
    timeline = sorted([("Enabled", -30), *changes], key=lambda c: (c[1], rank[c[0]]))
    in_force = [k for k, m in timeline if m <= 0][-1]
    return in_force != "Enabled" or any(k != "Enabled" and 0 < m <= 1 for k, m in changes)


@pytest.mark.usefixtures("app_env")
@given(st.data(), state_changes)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_refusal_alerts_end_as_the_facts_define_whatever_the_order(
        run: Any, data: st.DataObject, changes: list[tuple[str, int]]) -> None:
    device_id = f"refusal-{uuid.uuid4().hex[:10]}"
    delivered = data.draw(deliveries(alert_story(device_id, changes)))
    deliver(run, *delivered)
    response = run(user_function("list_alerts")(
        http_request("GET", "alerts", params={"deviceId": device_id, "since": _z(datetime.now(UTC) - timedelta(
            days=80))})))
    alerts = [a for a in json_of(response)["items"] if a["rule"] == "disconnectionReason"]
    assert len(alerts) == (0 if refusal_expected(changes) else 1)


def _renamed(document: dict[str, Any], device_id: str) -> dict[str, Any]:
    data = dict(document["data"], clientAuthenticationName=device_id)
    return dict(document, data=data)
