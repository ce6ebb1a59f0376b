"""Alerts in Table storage.

Layout (table ``alerts``): ``PartitionKey`` = the alert's UTC day ``yyyyMMdd``,
``RowKey`` = milliseconds to the year 9999 minus the alert's time, then its id, so
a partition reads newest first. An alert's id is deterministic (see
:mod:`shared.lifecycle.alerts`), and a second write of the same alert is a no-op:
redeliveries raise nothing twice and the first ``raisedAt`` stays.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from shared.alerts.models import Alert
from shared.platform.storage import DataStore
from shared.platform.storage_names import ALERTS_TABLE

_MAX_MS = int(datetime(9999, 12, 31, tzinfo=UTC).timestamp() * 1000)
DEFAULT_LOOKBACK = timedelta(days=7)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _to_entity(alert: Alert) -> dict[str, Any]:
    from azure.data.tables import EdmType, EntityProperty

    return {
        "PartitionKey": alert.timestamp.astimezone(UTC).strftime("%Y%m%d"),
        "RowKey": f"{_MAX_MS - _ms(alert.timestamp):015d}_{alert.alert_id}",
        "deviceId": alert.device_id,
        "timestampMs": EntityProperty(_ms(alert.timestamp), EdmType.INT64),
        "doc": orjson.dumps(alert.model_dump(mode="json")).decode(),
    }


def _days(first: date, last: date, *, newest_first: bool) -> list[str]:
    """The day partitions from ``first`` to ``last``, both included."""
    days = [(first + timedelta(days=n)).strftime("%Y%m%d") for n in range((last - first).days + 1)]
    return days[::-1] if newest_first else days


class AlertStore:
    def __init__(self, store: DataStore) -> None:
        self._store = store

    async def add(self, alerts: list[Alert]) -> list[Alert]:
        """Store ``alerts``; any already stored is left as it is. Returns the new ones."""
        from azure.core.exceptions import ResourceExistsError

        if not alerts:
            return []
        table = await self._store.table(ALERTS_TABLE)

        async def add_one(alert: Alert) -> bool:
            try:
                await table.create_entity(_to_entity(alert))
            except ResourceExistsError:
                return False
            return True

        created = await asyncio.gather(*(add_one(a) for a in alerts))
        return [alert for alert, new in zip(alerts, created, strict=True) if new]

    async def retract(self, device_id: str, *, rule: str, values: frozenset[str], since: datetime,
                      now: datetime | None = None) -> list[Alert]:
        """Delete ``device_id``'s alerts of ``rule`` with a value in ``values``, stamped
        ``since`` or later (alerts that later events showed to be expected)."""
        table = await self._store.table(ALERTS_TABLE)
        retracted = []
        async for entity in self._entities(since=since, now=now, device_id=device_id, newest_first=False):
            alert = Alert.model_validate(orjson.loads(entity["doc"]))
            if alert.rule == rule and alert.value in values:
                await table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                retracted.append(alert)
        return retracted

    async def list(
        self, *, device_id: str | None = None, since: datetime | None = None, limit: int = 100,
        now: datetime | None = None,
    ) -> list[Alert]:
        """Newest first, at most ``limit``, not older than ``since`` (default: 7 days)."""
        now = now or datetime.now(UTC)
        items: list[Alert] = []
        async for entity in self._entities(since=since or now - DEFAULT_LOOKBACK, now=now, device_id=device_id,
                                           newest_first=True):
            items.append(Alert.model_validate(orjson.loads(entity["doc"])))
            if len(items) >= limit:
                break
        return items

    async def _entities(self, *, since: datetime, now: datetime | None, device_id: str | None,
                        newest_first: bool) -> AsyncIterator[dict[str, Any]]:
        """Alert entities stamped ``since`` or later, a day partition at a time,
        each partition newest first; optionally of one device only."""
        table = await self._store.table(ALERTS_TABLE)
        query = "PartitionKey eq @day and timestampMs ge @since"
        parameters: dict[str, Any] = {"since": _ms(since)}
        if device_id is not None:
            query += " and deviceId eq @device"
            parameters["device"] = device_id
        # Alerts carry the device's time, which may run a day ahead of ours.
        last = ((now or datetime.now(UTC)) + timedelta(days=1)).date()
        for day in _days(since.astimezone(UTC).date(), last, newest_first=newest_first):
            async for entity in table.query_entities(query, parameters={**parameters, "day": day}):
                yield entity
