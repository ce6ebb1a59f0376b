"""The alerts store: a storm spreads over partitions, a device's alerts are one
partition, and a listing costs what it returns, not the time it spans."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.alerts.models import Alert
from shared.alerts.store import AlertStore
from shared.platform.storage import data_store
from shared.platform.storage_names import ALERTS_TABLE
from tests.support.harness import http_request, json_of, storage_requests, user_function

pytestmark = pytest.mark.usefixtures("empty_registry")
NOW = datetime.now(UTC).replace(microsecond=0)


def alert(device_id: str, at: datetime, n: int = 0) -> Alert:
    return Alert(alert_id=f"{device_id}-{n}", device_id=device_id, rule="flapping", severity="warning",
                 stream="lifecycle", message="m", value=n, timestamp=at, raised_at=at)


def list_alerts(run: Any, **params: str) -> Any:
    return run(user_function("list_alerts")(http_request("GET", "alerts", params=params)))


def z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_a_storm_of_one_hour_spreads_over_partitions_and_still_lists_newest_first(run: Any) -> None:
    rng = random.Random(7)
    storm = [alert(f"storm-{n:03d}", NOW - timedelta(minutes=30, seconds=rng.randrange(1800)))
             for n in range(200)]
    run(AlertStore(data_store()).add(storm))

    async def partitions() -> set[str]:
        table = await data_store().table(ALERTS_TABLE)
        return {e["PartitionKey"] async for e in table.list_entities(select=["PartitionKey"])
                if e["PartitionKey"].startswith("t")}

    assert len(run(partitions())) >= 12, "16 shards: a storm is not one hot partition"
    listed = json_of(list_alerts(run, limit="50"))["items"]
    want = sorted(storm, key=lambda a: (a.timestamp, a.alert_id), reverse=True)[:50]
    assert [a["timestamp"] for a in listed] == [z(a.timestamp) for a in want]


def test_a_devices_alerts_are_read_from_its_own_partition_only(run: Any) -> None:
    run(AlertStore(data_store()).add([alert("mine", NOW - timedelta(hours=h), h) for h in range(5)]
                                     + [alert(f"other-{n}", NOW - timedelta(hours=1)) for n in range(20)]))
    with storage_requests(run) as requests:
        items = json_of(list_alerts(run, deviceId="mine"))["items"]
    assert [a["value"] for a in items] == [0, 1, 2, 3, 4]
    queries = requests.to("/alerts()")
    assert len(queries) == 1 and "PartitionKey eq 'dmine'" in queries[0][1]


def test_listing_ninety_days_of_few_alerts_costs_one_query(run: Any) -> None:
    run(AlertStore(data_store()).add([alert("old", NOW - timedelta(days=80)), alert("new", NOW)]))
    with storage_requests(run) as requests:
        items = json_of(list_alerts(run, since=z(NOW - timedelta(days=89))))["items"]
    assert [a["deviceId"] for a in items] == ["new", "old"]
    assert len(requests.to("/alerts()")) == 1, "empty hours cost nothing"


@pytest.mark.parametrize("since", [
    z(NOW - timedelta(days=91)), "2000-01-01T00:00:00Z", "0001-01-02T00:00:00Z", "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
])
def test_a_since_beyond_the_cap_or_the_calendar_is_a_400_that_says_why(run: Any, since: str) -> None:
    response = list_alerts(run, since=since)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    detail = json_of(response)["detail"]
    assert "90 days" in detail or "between" in detail


def test_a_removed_alert_is_gone_from_both_listings(run: Any) -> None:
    store = AlertStore(data_store())
    gone, kept = alert("rm", NOW - timedelta(minutes=5), 1), alert("rm", NOW - timedelta(minutes=6), 2)
    run(store.add([gone, kept]))
    run(store.remove([gone]))
    run(store.remove([gone]))  # already gone is fine
    assert [a["value"] for a in json_of(list_alerts(run, deviceId="rm"))["items"]] == [2]
    assert [a["value"] for a in json_of(list_alerts(run))["items"]] == [2]


def test_an_alert_raised_today_for_a_message_of_last_month_is_listed_as_todays(run: Any) -> None:
    late = Alert(alert_id="late-1", device_id="late", rule="cpuTempHigh", severity="warning", stream="telemetry",
                 message="m", value=91, timestamp=NOW - timedelta(days=30), raised_at=NOW)
    run(AlertStore(data_store()).add([late]))
    assert [a["alertId"] for a in json_of(list_alerts(run))["items"]][:1] == ["late-1"]
    assert [a["alertId"] for a in json_of(list_alerts(run, deviceId="late"))["items"]] == ["late-1"]
    since_yesterday = json_of(list_alerts(run, deviceId="late", since=z(NOW - timedelta(days=1))))["items"]
    assert [a["alertId"] for a in since_yesterday] == ["late-1"]


def test_a_second_add_keeps_the_first_raised_at_in_both_listings(run: Any) -> None:
    store = AlertStore(data_store())
    first = alert("twice", NOW - timedelta(minutes=10), 1)
    assert run(store.add([first])) == [first]
    assert run(store.add([first.model_copy(update={"raised_at": NOW})])) == []
    for listing in (json_of(list_alerts(run))["items"], json_of(list_alerts(run, deviceId="twice"))["items"]):
        assert [a["raisedAt"] for a in listing if a["deviceId"] == "twice"] == [z(first.raised_at)]


def test_an_add_that_fails_before_its_time_row_lists_it_in_both_once_retried(run: Any) -> None:
    from tests.support.harness import failing_requests

    store = AlertStore(data_store())
    crashed = alert("crash", NOW - timedelta(minutes=3), 7)
    with failing_requests(run, "POST", "/alerts", times=1), pytest.raises(Exception, match="injected"):
        run(store.add([crashed]))  # the device's rows are written, the time row is not
    assert run(store.add([crashed])) == [], "the retry finds it stored"
    assert [a["alertId"] for a in json_of(list_alerts(run))["items"]].count(crashed.alert_id) == 1
    assert [a["alertId"] for a in json_of(list_alerts(run, deviceId="crash"))["items"]] == [crashed.alert_id]


def test_adds_and_removes_at_once_leave_both_listings_agreeing(run: Any) -> None:
    """An add that meets a remove fails (Contention) and is retried, as the host
    retries the invocation; whatever the interleaving, the listings agree."""
    import asyncio

    from shared.platform.errors import Contention

    store = AlertStore(data_store())
    raced = [alert(f"race-{n}", NOW - timedelta(minutes=1), n) for n in range(12)]

    async def add_retried(one: Alert) -> None:
        for _ in range(10):
            try:
                await store.add([one])
                return
            except Contention:
                await asyncio.sleep(0.01)
        raise AssertionError(f"{one.alert_id} never settled")

    async def race() -> None:
        for _ in range(3):
            await asyncio.gather(*(add_retried(a) for a in raced), *(store.remove([a]) for a in raced[::2]))

    run(race())
    listed = json_of(list_alerts(run, limit="1000"))["items"]
    by_time = {a["alertId"] for a in listed if a["deviceId"].startswith("race")}
    by_device = {a["alertId"] for n in range(12) for a in json_of(list_alerts(run, deviceId=f"race-{n}"))["items"]}
    assert by_time == by_device
