"""Alerts in Table storage, written twice so that both reads touch only what they return.

Table ``alerts``:

* by time: ``PartitionKey`` = ``t`` + the alert's UTC hour counted down from the
  year 2100 (7 digits) + a shard ``0``-``f`` from the device id, ``RowKey`` =
  milliseconds counted down + ``_`` + the alert id. A storm of one hour spreads over
  16 partitions; one range query over partition keys reads the newest hours first,
  and hours without alerts cost nothing.
* by device: ``PartitionKey`` = ``d`` + the escaped device id, the same ``RowKey``:
  one partition holds a device's alerts, newest first.

An alert's id is derived from what raised it, so a second ``add`` of the same alert
changes nothing (the first ``raisedAt`` stays) and ``remove`` finds its rows by
their keys alone. The two rows are not written atomically; a failure between them
fails the invocation, and the retry writes both again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.alerts.models import Alert
from shared.platform.errors import InvalidInput
from shared.platform.keys import device_key
from shared.platform.storage import DataStore
from shared.platform.storage_names import ALERTS_TABLE
from shared.platform.timestamps import MAX_TIMESTAMP

_MAX_MS = int(MAX_TIMESTAMP.timestamp() * 1000)
_MAX_HOUR = _MAX_MS // 3_600_000
SHARDS = 16
DEFAULT_LOOKBACK = timedelta(days=7)
MAX_LOOKBACK = timedelta(days=90)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _hour_key(moment: datetime) -> str:
    return f"t{_MAX_HOUR - _ms(moment) // 3_600_000:07d}"


def _shard(device_id: str) -> str:
    return f"{hashlib.sha256(device_id.encode('utf-8', 'surrogatepass')).digest()[0] % SHARDS:x}"


def _row_key(alert: Alert) -> str:
    return f"{_MAX_MS - _ms(alert.timestamp):015d}_{alert.alert_id}"


def _keys(alert: Alert) -> tuple[tuple[str, str], tuple[str, str]]:
    """(time row, device row) keys of ``alert``."""
    row = _row_key(alert)
    return (_hour_key(alert.timestamp) + _shard(alert.device_id), row), ("d" + device_key(alert.device_id), row)


def _entity(alert: Alert, keys: tuple[str, str]) -> dict[str, Any]:
    from azure.data.tables import EdmType, EntityProperty

    return {
        "PartitionKey": keys[0], "RowKey": keys[1], "deviceId": alert.device_id, "rule": alert.rule,
        "timestampMs": EntityProperty(_ms(alert.timestamp), EdmType.INT64),
        "doc": orjson.dumps(alert.model_dump(mode="json")).decode(),
    }


def _alert(entity: dict[str, Any]) -> Alert:
    return Alert.model_validate(orjson.loads(entity["doc"]))


def check_since(since: datetime | None, now: datetime) -> datetime:
    """The start of a listing: default 7 days back, at most 90 (400 beyond that)."""
    if since is None:
        return now - DEFAULT_LOOKBACK
    if since < now - MAX_LOOKBACK:
        raise InvalidInput(f"since may be at most {MAX_LOOKBACK.days} days ago")
    return since


class AlertStore:
    def __init__(self, store: DataStore) -> None:
        self._store = store

    async def add(self, alerts: Iterable[Alert]) -> list[Alert]:
        """Store ``alerts``; any already stored is left as it is. Returns the new ones."""
        from azure.core.exceptions import ResourceExistsError

        alerts = list(alerts)
        if not alerts:
            return []
        table = await self._store.table(ALERTS_TABLE)

        async def create(entity: dict[str, Any]) -> bool:
            try:
                await table.create_entity(entity)
            except ResourceExistsError:
                return False
            return True

        async def add_one(alert: Alert) -> bool:
            by_time, by_device = _keys(alert)
            new = await asyncio.gather(create(_entity(alert, by_time)), create(_entity(alert, by_device)))
            return new[0]

        created = await asyncio.gather(*(add_one(a) for a in alerts))
        return [alert for alert, new in zip(alerts, created, strict=True) if new]

    async def remove(self, alerts: Iterable[Alert]) -> None:
        """Delete ``alerts`` (both rows); already gone is fine."""
        alerts = list(alerts)
        if not alerts:
            return
        table = await self._store.table(ALERTS_TABLE)
        # delete_entity treats "not found" as done.
        await asyncio.gather(*(table.delete_entity(pk, rk) for alert in alerts for pk, rk in _keys(alert)))

    async def of_device(self, device_id: str, *, rule: str | None = None, since: datetime | None = None,
                        limit: int | None = None) -> list[Alert]:
        """``device_id``'s alerts, newest first: one partition."""
        table = await self._store.table(ALERTS_TABLE)
        query = "PartitionKey eq @pk"
        parameters: dict[str, Any] = {"pk": "d" + device_key(device_id)}
        if since is not None:
            query += " and RowKey lt @row"
            parameters["row"] = f"{_MAX_MS - _ms(since) + 1:015d}"
        if rule is not None:
            query += " and rule eq @rule"
            parameters["rule"] = rule
        items: list[Alert] = []
        async for entity in table.query_entities(query, parameters=parameters, select=["doc"],
                                                 results_per_page=min(limit or 1000, 1000)):
            items.append(_alert(entity))
            if limit is not None and len(items) >= limit:
                break
        return items

    async def list(self, *, device_id: str | None = None, since: datetime | None = None, limit: int = 100,
                   now: datetime | None = None) -> list[Alert]:
        """Newest first, at most ``limit``, not older than ``since`` (default 7 days,
        at most 90). The cost grows with the alerts read, not with the time spanned."""
        now = now or datetime.now(UTC)
        since = check_since(since, now)
        if device_id is not None:
            return await self.of_device(device_id, since=since, limit=limit)
        table = await self._store.table(ALERTS_TABLE)
        # Partitions sort by hour, newest first, then by shard: gather an hour's shards,
        # then order them, until the page is full.
        query = "PartitionKey gt @lo and PartitionKey lt @hi and timestampMs ge @since"
        parameters = {"lo": "t", "hi": f"t{_MAX_HOUR - _ms(since) // 3_600_000 + 1:07d}",
                      "since": _ms(since)}
        items: list[Alert] = []
        hour: list[tuple[str, dict[str, Any]]] = []
        current = None
        async for entity in table.query_entities(query, parameters=parameters, select=["PartitionKey", "RowKey",
                                                                                        "doc"],
                                                 results_per_page=min(limit * 2, 1000)):
            prefix = entity["PartitionKey"][:8]
            if prefix != current:
                items += [_alert(e) for _, e in sorted(hour, key=lambda p: p[0])]
                if len(items) >= limit:
                    return items[:limit]
                hour, current = [], prefix
            hour.append((entity["RowKey"], entity))
        items += [_alert(e) for _, e in sorted(hour, key=lambda p: p[0])]
        return items[:limit]
