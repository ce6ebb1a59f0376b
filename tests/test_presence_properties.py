"""Property: for any interleaving and duplication of a device's life cycle events, the
registry ends in the state that the sequence numbers (and updatedOn) define."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.lifecycle.events import parse_lifecycle_event
from shared.lifecycle.models import Device
from shared.lifecycle.presence import apply_event
from tests.harness import deliver, http_request, json_of, user_function
from tools import event_factory as ev

T0 = datetime(2026, 11, 20, tzinfo=UTC)

# A device's story: sessions 1..n, each connected and perhaps disconnected, plus
# metadata updates at distinct times.
sessions = st.lists(st.booleans(), min_size=1, max_size=8)
updates = st.lists(st.integers(min_value=0, max_value=10_000), max_size=4, unique=True)


def story(device_id: str, closed: list[bool], update_minutes: list[int]) -> list[dict[str, Any]]:
    documents = []
    for seq, was_closed in enumerate(closed, start=1):
        at = T0 + timedelta(minutes=10 * seq)
        documents.append(ev.connected(device_id, seq, at, session=f"s{seq}"))
        if was_closed:
            documents.append(ev.disconnected(device_id, seq, at + timedelta(minutes=5), session=f"s{seq}",
                                             reason="ConnectionLost"))
    for minute in update_minutes:
        documents.append(ev.created_or_updated(device_id, T0 + timedelta(minutes=minute), created_on=T0,
                                               attributes={"rev": minute}))
    return documents


def expected(closed: list[bool], update_minutes: list[int]) -> dict[str, Any]:
    last = len(closed)
    last_closed = max((seq for seq, c in enumerate(closed, start=1) if c), default=None)
    return {"connected": not closed[-1], "sequenceNumber": last, "sessionName": f"s{last}",
            "attributes": {"rev": max(update_minutes)} if update_minutes else None,
            "lastConnectedAt": (T0 + timedelta(minutes=10 * last)).isoformat().replace("+00:00", "Z"),
            "lastDisconnectedAt": (T0 + timedelta(minutes=10 * last_closed + 5)).isoformat().replace("+00:00", "Z")
            if last_closed else None}


def deliveries(documents: list[dict[str, Any]]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Every event at least once, some more than once, in any order."""
    return st.lists(st.sampled_from(documents), max_size=len(documents)).flatmap(
        lambda extra: st.permutations(documents + extra))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[bool], list[int], list[dict[str, Any]]]:
    closed, minutes = draw(sessions), draw(updates)
    return closed, minutes, draw(deliveries(story("prop-device", closed, minutes)))


@given(scenarios())
@settings(max_examples=300, deadline=None)
def test_the_pure_state_is_what_the_sequence_numbers_define(
        scenario: tuple[list[bool], list[int], list[dict[str, Any]]]) -> None:
    closed, minutes, delivered = scenario
    device: Device | None = None
    for document in delivered:
        device = apply_event(device, parse_lifecycle_event(ev.to_function_event(document)))
    assert device is not None
    state = device.to_json_dict()
    want = expected(closed, minutes)
    assert {k: state.get(k) for k in want} == want
    assert len(device.connection_history) == min(20, len(closed) + sum(closed)), "duplicates are not history"


@pytest.mark.usefixtures("app_env")
@given(scenarios())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_stored_state_is_what_the_sequence_numbers_define(
        run: Any, scenario: tuple[list[bool], list[int], list[dict[str, Any]]]) -> None:
    closed, minutes, delivered = scenario
    device_id = f"prop-{uuid.uuid4().hex[:10]}"
    deliver(run, *(_renamed(d, device_id) for d in delivered))
    response = run(user_function("get_device")(
        http_request("GET", f"devices/{device_id}", route_params={"deviceId": device_id})))
    state = json_of(response)
    want = expected(closed, minutes)
    assert {k: state.get(k) for k in want} == want


def _renamed(document: dict[str, Any], device_id: str) -> dict[str, Any]:
    data = dict(document["data"], clientAuthenticationName=device_id)
    return dict(document, data=data)
