"""Alerts in Table storage, listed by when they were raised, so that both listings
touch only what they return.

Table ``alerts``, three rows per alert:

* by device: ``PartitionKey`` = ``d`` + the escaped device id, holding two rows
  written in one transaction: ``i_`` + the alert id (which makes a second ``add`` of
  the same alert a no-op and keeps the first ``raisedAt``), and ``r`` + milliseconds
  of ``raisedAt`` counted down + ``_`` + the id (the device's listing, newest first);
* by time: ``PartitionKey`` = ``t`` + the UTC hour of ``raisedAt`` counted down from
  the year 2100 (7 digits) + a shard ``0``-``f`` from the device id, ``RowKey`` as the
  device's listing row. A storm of one hour spreads over 16 partitions; one range
  query over partition keys reads the newest hours first, and hours without alerts
  cost nothing.

Listings go by ``raisedAt``: an alert raised today for a message stamped last month
is today's. The time row is derived from the device's rows, which decide: ``add``
writes it after them (from the stored ``raisedAt``) and then reads the id row back;
``remove`` first marks the id row ``removing`` (on its ETag), then deletes the time
row, then the device's rows. An add that meets the mark, before or after writing its
time row, takes the time row back and fails, so the retry decides again; a crash in
between leaves the time row missing until the retry writes it, never a time row
without its alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.alerts.models import Alert
from shared.platform import metrics
from shared.platform.errors import Contention, InvalidInput
from shared.platform.keys import device_key
from shared.platform.rows import contended
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


def _listed(raised_at: datetime, alert_id: str) -> str:
    return f"r{_MAX_MS - _ms(raised_at):015d}_{alert_id}"


def _device_partition(device_id: str) -> str:
    return "d" + device_key(device_id)


def _id_row(alert_id: str) -> str:
    return "i_" + alert_id


def _time_keys(alert: Alert) -> tuple[str, str]:
    return _hour_key(alert.raised_at) + _shard(alert.device_id), _listed(alert.raised_at, alert.alert_id)


def _entity(alert: Alert, partition: str, row: str) -> dict[str, Any]:
    from azure.data.tables import EdmType, EntityProperty

    return {
        "PartitionKey": partition, "RowKey": row, "deviceId": alert.device_id, "rule": alert.rule,
        "raisedAtMs": EntityProperty(_ms(alert.raised_at), EdmType.INT64),
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


# Marks of a remove tried before the invocation fails (each miss means the row changed).
MAX_ATTEMPTS = 5


class AlertStore:
    def __init__(self, store: DataStore) -> None:
        self._store = store

    async def add(self, alerts: Iterable[Alert]) -> list[Alert]:
        """Store ``alerts``; any already stored is left as it is (its first ``raisedAt``
        stays). Returns the new ones."""
        alerts = list(alerts)
        if not alerts:
            return []
        created = await asyncio.gather(*(self._add(a) for a in alerts))
        new = [alert for alert, new in zip(alerts, created, strict=True) if new]
        for rule in {a.rule for a in new}:
            metrics.record(metrics.ALERTS, sum(1 for a in new if a.rule == rule), rule=rule)
        return new

    async def _add(self, alert: Alert) -> bool:
        from azure.core.exceptions import ResourceExistsError
        from azure.data.tables import TableTransactionError

        table = await self._store.table(ALERTS_TABLE)
        partition = _device_partition(alert.device_id)
        try:
            await table.submit_transaction([
                ("create", _entity(alert, partition, _id_row(alert.alert_id))),
                ("create", _entity(alert, partition, _listed(alert.raised_at, alert.alert_id)))])
            new = True
        except TableTransactionError as exc:
            if exc.status_code != 409:
                raise
            stored = await self._stored(alert)
            if stored is None or stored[1] is not None:
                raise Contention(f"alert {alert.alert_id} is being removed; the retry adds it again") from None
            alert, new = stored[0], False
        time_partition, row = _time_keys(alert)
        with contextlib.suppress(ResourceExistsError):
            await table.create_entity(_entity(alert, time_partition, row))
        stored = await self._stored(alert)
        if stored is None or stored[1] is not None:  # a remove began meanwhile: take the time row back
            await table.delete_entity(time_partition, row)
            raise Contention(f"alert {alert.alert_id} was removed while it was added; the retry adds it again")
        return new

    async def _stored(self, alert: Alert) -> tuple[Alert, str | None] | None:
        """The stored copy of ``alert`` (by its id) and, when a remove has begun, the
        ETag of its mark; None when there is none."""
        from azure.core.exceptions import ResourceNotFoundError

        table = await self._store.table(ALERTS_TABLE)
        try:
            entity = await table.get_entity(_device_partition(alert.device_id), _id_row(alert.alert_id))
        except ResourceNotFoundError:
            return None
        return _alert(entity), (str(entity.metadata["etag"]) if entity.get("removing") else None)

    async def remove(self, alerts: Iterable[Alert]) -> None:
        """Delete ``alerts``; already gone is fine. First the id row is marked
        ``removing`` (on its ETag), so an add that meets the mark, before or after it
        writes the time row, takes its time row back and fails to be retried; then the
        time row goes, then the device's two rows in one transaction. A remove that
        dies midway is finished by its retry: the mark stays until the end."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import TableTransactionError, UpdateMode

        table = await self._store.table(ALERTS_TABLE)

        async def remove_one(alert: Alert) -> None:
            partition = _device_partition(alert.device_id)
            for _ in contended(f"alert {alert.alert_id} being removed", MAX_ATTEMPTS):
                try:
                    entity = await table.get_entity(partition, _id_row(alert.alert_id))
                except ResourceNotFoundError:
                    return
                stored = _alert(entity)
                if not entity.get("removing"):
                    try:
                        await table.update_entity({**entity, "removing": True}, mode=UpdateMode.REPLACE,
                                                  etag=entity.metadata["etag"],
                                                  match_condition=MatchConditions.IfNotModified)
                    except (ResourceModifiedError, ResourceNotFoundError):
                        continue  # changed meanwhile: look again
                await table.delete_entity(*_time_keys(stored))  # "not found" is done
                try:
                    await table.submit_transaction([
                        ("delete", {"PartitionKey": partition, "RowKey": _id_row(stored.alert_id)}),
                        ("delete", {"PartitionKey": partition, "RowKey": _listed(stored.raised_at,
                                                                                    stored.alert_id)})])
                except TableTransactionError as exc:
                    if exc.status_code != 404:  # removed meanwhile by another remove
                        raise
                return

        await asyncio.gather(*(remove_one(a) for a in alerts))

    async def of_device(self, device_id: str, *, rule: str | None = None, since: datetime | None = None,
                        limit: int | None = None) -> list[Alert]:
        """``device_id``'s alerts, newest raised first: one partition."""
        table = await self._store.table(ALERTS_TABLE)
        query = "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi"
        newest = f"r{_MAX_MS - _ms(since) + 1:015d}" if since is not None else "s"
        parameters: dict[str, Any] = {"pk": _device_partition(device_id), "lo": "r", "hi": newest}
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
        """Newest raised first, at most ``limit``, raised at ``since`` or later
        (default 7 days ago, at most 90). The cost grows with the alerts read, not with the time spanned."""
        now = now or datetime.now(UTC)
        since = check_since(since, now)
        if device_id is not None:
            return await self.of_device(device_id, since=since, limit=limit)
        table = await self._store.table(ALERTS_TABLE)
        # Partitions sort by hour, newest first, then by shard: gather an hour's shards,
        # then order them, until the page is full.
        query = "PartitionKey gt @lo and PartitionKey lt @hi and raisedAtMs ge @since"
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
