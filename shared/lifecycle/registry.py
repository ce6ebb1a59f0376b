"""The device registry in Table storage.

Table ``devices``:

* one partition per device, ``PartitionKey`` = :func:`shared.platform.keys.device_key`;
  its row ``RowKey = "registry"`` holds the device as the API returns it (camelCase
  JSON in ``doc``, served as stored), the internal facts it was derived from
  (``states``), and the columns queries filter on (``deviceId``, ``connected``,
  ``deleted``, ``state``) or commands read (``createdOn``, ``pendingCommands``);
* other rows of the partition hold fields that other capabilities keep for the
  device (the streams' latest state): ``RowKey`` = the field (its JSON in ``doc``,
  split over binary properties by :func:`shared.platform.rows.split_json`),
  or ``field|name`` for one entry of a map field; ``get_device`` returns them with
  the registry entry, ``list_devices`` does not;
* a row ``@{table}|{partition}`` says that fields of the device are kept in that
  table's partition, in rows whose ``RowKey`` is ``prefix`` and the field (the streams
  keep a device's latest state beside those of the other devices of its Event Hubs
  partition, to write them together); ``get_device`` reads them there, and combines
  the rows of one field found in several places (a device whose messages came through
  two partitions, rows written before the state moved) by the ``combine`` its caller
  gives;
* the index of connected devices: partition ``~connected`` (no device key can be it:
  keys escape ``~`` as ``~7E``), one row per device, ``RowKey`` = ``c`` + the key.

Writes to a device's row are conditional on its ETag, so concurrent invocations for
one device never lose an update. The index is a superset of the connected devices,
kept without a read: a device that becomes connected gets its index row *before* its
registry row says so (the row's ETag is kept in the registry row as ``indexEtag``),
and one that becomes disconnected loses it *after*, by a delete conditional on that
ETag, so a newer connect's row is never removed. Readers check every index row
against the registry row, so a stale one (left by a crash) shows nothing wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from shared.platform.errors import InvalidInput
from shared.platform.keys import device_key
from shared.platform.paging import query_page, token_scope
from shared.platform.rows import backoff, contended, joined_json, split_names
from shared.platform.storage import DataStore
from shared.platform.storage_names import DEVICES_TABLE

if TYPE_CHECKING:  # the read path (get_device, list_devices) builds no model: pydantic is imported on writes
    from shared.lifecycle.events import LifecycleEvent
    from shared.lifecycle.models import DeviceRecord

REGISTRY_ROW = "registry"
POINTER_PREFIX = "@"  # no field's row starts with it
# combine(field, its rows: in the device's partition first, then where pointers say): its JSON.
Combine = Callable[[str, list[dict[str, Any]]], Any]
CONNECTED_PARTITION = "~connected"
MAX_ATTEMPTS = 8
# Table storage limits a string property to 64 KiB of UTF-16.
MAX_PROPERTY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Standing:
    """A device as commands see it, and its registry row's ETag."""

    connected: bool
    deleted: bool
    state: str
    pending_commands: bool
    etag: str
    created_on: datetime | None = None  # when the client's current incarnation was created


def _to_entity(record: DeviceRecord, index_etag: str | None) -> dict[str, Any]:
    device = record.device
    doc = orjson.dumps(device.to_json_dict()).decode()
    if len(doc.encode("utf-16-le")) > MAX_PROPERTY_BYTES:
        raise InvalidInput(f"the device's entry would be {len(doc)} characters, more than Table storage keeps "
                           "in one property (64 KiB): its attributes are too large")
    entity: dict[str, Any] = {
        "PartitionKey": device_key(device.device_id), "RowKey": REGISTRY_ROW, "deviceId": device.device_id,
        "connected": device.connected, "deleted": device.deleted, "state": device.state, "doc": doc,
        "states": orjson.dumps([f.model_dump(mode="json") for f in record.states]).decode(),
    }
    if device.created_on is not None:
        entity["createdOn"] = device.created_on.isoformat()
    if index_etag:
        entity["indexEtag"] = index_etag
    if record.pending_commands:
        entity["pendingCommands"] = True
    return entity


def _record(entity: dict[str, Any]) -> DeviceRecord:
    from shared.lifecycle.models import Device, DeviceRecord, StateFact

    return DeviceRecord(device=Device.model_validate(orjson.loads(entity["doc"])),
                        states=[StateFact.model_validate(f) for f in orjson.loads(entity.get("states") or "[]")],
                        pending_commands=bool(entity.get("pendingCommands")))


def _index_key(device_id: str) -> tuple[str, str]:
    return CONNECTED_PARTITION, "c" + device_key(device_id)


class DeviceRegistry:
    def __init__(self, store: DataStore) -> None:
        self._store = store

    async def document(self, device_id: str, combine: Combine | None = None) -> bytes | None:
        """The device as the API returns it, JSON, with the fields other capabilities
        keep for it: one query of its partition, then one of each partition its ``@``
        rows name (concurrently); no model is built. ``combine(field, rows)`` gives the
        JSON of a field found in several rows (default: the last one's)."""
        table = await self._store.table(DEVICES_TABLE)
        registry: dict[str, Any] | None = None
        found: dict[str, list[Any]] = {}
        pointers: list[dict[str, Any]] = []
        async for entity in table.query_entities("PartitionKey eq @pk", parameters={"pk": device_key(device_id)},
                                                 select=["RowKey", "stamps", "metrics", "table", "partition",
                                                         "prefix", *split_names("doc")]):
            row = entity["RowKey"]
            if row == REGISTRY_ROW:
                registry = joined_json(entity, "doc")
            elif row.startswith(POINTER_PREFIX):
                pointers.append(entity)
            else:
                found[row] = [entity]
        for rows in await asyncio.gather(*(self._pointed(p) for p in pointers)):
            for row, pointed in rows.items():
                found.setdefault(row, []).append(pointed)
        extra: dict[str, Any] = {}
        for row in sorted(found):
            kept = found[row]
            doc = combine(row, kept) if combine and len(kept) > 1 else joined_json(kept[-1], "doc")
            if "|" in row:
                name, key = row.split("|", 1)
                extra.setdefault(name, {})[key] = doc
            else:
                extra[row] = doc
        if registry is None:
            if not extra:
                return None
            # Data arrived before any life cycle event did: the device exists all the same.
            registry = {"deviceId": device_id, "state": "Unknown", "deleted": False, "connected": False,
                        "connectionHistory": []}
        return orjson.dumps(registry | extra)

    async def _pointed(self, pointer: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The rows a ``@`` row names, by field."""
        prefix: str = pointer["prefix"]
        table = await self._store.table(pointer["table"])
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        parameters = {"pk": pointer["partition"], "low": prefix, "high": prefix + "\uffff"}
        return {entity["RowKey"][len(prefix):]: entity
                async for entity in table.query_entities(query, parameters=parameters,
                                                         select=["RowKey", "stamps", *split_names("doc")])}

    async def point(self, device_ids: list[str], *, table: str, partition: str, prefix: Callable[[str], str]
                    ) -> None:
        """Say for each device that fields of it are kept in ``table``'s ``partition``,
        in rows ``prefix(device_id) + field`` (one upsert each: the same pointer written
        twice is the same row)."""
        from azure.data.tables import UpdateMode

        devices = await self._store.table(DEVICES_TABLE)
        await asyncio.gather(*(devices.upsert_entity(
            {"PartitionKey": device_key(d), "RowKey": f"{POINTER_PREFIX}{table}|{partition}", "table": table,
             "partition": partition, "prefix": prefix(d)}, mode=UpdateMode.REPLACE) for d in device_ids))

    async def record(self, device_id: str) -> DeviceRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        table = await self._store.table(DEVICES_TABLE)
        try:
            return _record(await table.get_entity(device_key(device_id), REGISTRY_ROW))
        except ResourceNotFoundError:
            return None

    async def apply(self, event: LifecycleEvent) -> tuple[DeviceRecord | None, DeviceRecord]:
        """Apply ``event`` to its device's entry; returns the entry before and after."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        from shared.lifecycle.presence import apply_event

        table = await self._store.table(DEVICES_TABLE)
        key = device_key(event.device_id)
        our_index_etag: str | None = None  # an index row this invocation wrote
        for attempt in contended(f"device {event.device_id!r}", MAX_ATTEMPTS):
            try:
                entity = await table.get_entity(key, REGISTRY_ROW)
            except ResourceNotFoundError:
                entity = None
            before = _record(entity) if entity is not None else None
            after = apply_event(before, event)
            after.pending_commands = before.pending_commands if before is not None else False
            was = before is not None and before.device.connected
            if after == before:
                break  # a duplicate, or nothing new
            index_etag = entity.get("indexEtag") if entity is not None else None
            if after.device.connected and not was:
                # Written afresh on every attempt: a row written by an earlier attempt
                # may have been removed since by the disconnect that beat it.
                our_index_etag = index_etag = await self._index(event.device_id)
            elif was and not after.device.connected:
                index_etag = None
            new = _to_entity(after, index_etag)
            try:
                if entity is None:
                    await table.create_entity(new)
                else:
                    await table.update_entity(new, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"],
                                              match_condition=MatchConditions.IfNotModified)
            except (ResourceExistsError, ResourceModifiedError):
                await backoff(attempt, step=0.02)
                continue
            if was and not after.device.connected and entity is not None and entity.get("indexEtag"):
                await self._unindex(event.device_id, entity["indexEtag"])
            break
        if our_index_etag is not None and not after.device.connected:
            await self._unindex(event.device_id, our_index_etag)  # written, then not needed after all
        return before, after

    async def standing(self, device_id: str) -> Standing | None:
        """What commands need of a device, from its row's columns (no model is built)."""
        from azure.core.exceptions import ResourceNotFoundError

        table = await self._store.table(DEVICES_TABLE)
        try:
            entity = await table.get_entity(device_key(device_id), REGISTRY_ROW,
                                            select=["connected", "deleted", "state", "pendingCommands", "createdOn"])
        except ResourceNotFoundError:
            return None
        created_on = entity.get("createdOn")  # absent from rows written before the column
        return Standing(bool(entity.get("connected")), bool(entity.get("deleted")), str(entity.get("state")),
                        bool(entity.get("pendingCommands")), str(entity.metadata["etag"]),
                        datetime.fromisoformat(created_on) if created_on else None)

    async def set_pending_commands(self, device_id: str, pending: bool, etag: str) -> bool:
        """Mark (or clear) that commands wait for the device, if its row is still at
        ``etag``; False when the row changed since (read it again and re-decide)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        table = await self._store.table(DEVICES_TABLE)
        try:
            await table.update_entity({"PartitionKey": device_key(device_id), "RowKey": REGISTRY_ROW,
                                       "pendingCommands": pending}, mode=UpdateMode.MERGE, etag=etag,
                                      match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    async def _index(self, device_id: str) -> str:
        table = await self._store.table(DEVICES_TABLE)
        pk, rk = _index_key(device_id)
        response = await table.upsert_entity({"PartitionKey": pk, "RowKey": rk, "deviceId": device_id})
        return str(response["etag"])

    async def _unindex(self, device_id: str, etag: str) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        table = await self._store.table(DEVICES_TABLE)
        pk, rk = _index_key(device_id)
        with contextlib.suppress(ResourceModifiedError):  # a newer connect wrote the row again: it stays
            await table.delete_entity(pk, rk, etag=etag, match_condition=MatchConditions.IfNotModified)

    async def list(
        self, *, connected: bool | None = None, limit: int = 100, continuation_token: str | None = None
    ) -> tuple[list[bytes], str | None]:
        """One page of devices (their JSON documents) and the token of the next page.

        ``connected=true`` reads the index partition and then each listed device's
        row; anything else scans the registry rows of every partition."""
        table = await self._store.table(DEVICES_TABLE)
        parameters: dict[str, Any]
        if connected:
            query, parameters, select = "PartitionKey eq @pk", {"pk": CONNECTED_PARTITION}, ["deviceId"]
        else:
            query, parameters, select = "RowKey eq @row", {"row": REGISTRY_ROW}, ["doc"]
            if connected is False:
                query += " and connected eq @connected"
                parameters["connected"] = False
        entities, token = await query_page(self._store, table, query, parameters,
                                           scope=token_scope("list_devices", connected=connected), limit=limit,
                                           select=select, continuation_token=continuation_token)
        if not connected:
            return [str(e["doc"]).encode() for e in entities], token
        rows = await asyncio.gather(*(self._connected_doc(e["deviceId"]) for e in entities))
        return [doc for doc in rows if doc is not None], token

    async def scan(self) -> AsyncIterator[dict[str, Any]]:
        """Every device's registry document (a scan of the whole table)."""
        table = await self._store.table(DEVICES_TABLE)
        async for entity in table.query_entities("RowKey eq @row", parameters={"row": REGISTRY_ROW}, select=["doc"]):
            yield orjson.loads(entity["doc"])

    async def _connected_doc(self, device_id: str) -> bytes | None:
        from azure.core.exceptions import ResourceNotFoundError

        table = await self._store.table(DEVICES_TABLE)
        try:
            entity = await table.get_entity(device_key(device_id), REGISTRY_ROW, select=["doc", "connected"])
        except ResourceNotFoundError:
            return None
        return str(entity["doc"]).encode() if entity.get("connected") else None
