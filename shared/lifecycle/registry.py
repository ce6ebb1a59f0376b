"""The device registry in Table storage.

Layout (table ``devices``): one partition per device, ``PartitionKey`` =
:func:`shared.platform.keys.device_key`; the registry entry is the row ``RowKey =
"registry"``, holding the whole :class:`Device` as JSON in ``doc`` plus the
columns that queries filter on (``deviceId``, ``connected``, ``deleted``,
``state``). Writes use optimistic concurrency on the row's ETag, so concurrent
invocations for one device never lose an update.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson

from shared.lifecycle.events import LifecycleEvent
from shared.lifecycle.models import Device
from shared.lifecycle.presence import apply_event
from shared.platform.keys import device_key
from shared.platform.paging import decode_token, encode_token, token_scope
from shared.platform.storage import DataStore
from shared.platform.storage_names import DEVICES_TABLE

REGISTRY_ROW = "registry"
MAX_ATTEMPTS = 8


class ConcurrencyError(RuntimeError):
    """A device's entry kept changing under us; the invocation fails and is retried."""


def _to_entity(device: Device) -> dict[str, Any]:
    return {
        "PartitionKey": device_key(device.device_id),
        "RowKey": REGISTRY_ROW,
        "deviceId": device.device_id,
        "connected": device.connected,
        "deleted": device.deleted,
        "state": device.state,
        "doc": orjson.dumps(device.model_dump(mode="json")).decode(),
    }


def _from_entity(entity: dict[str, Any]) -> Device:
    return Device.model_validate(orjson.loads(entity["doc"]))


class DeviceRegistry:
    def __init__(self, store: DataStore) -> None:
        self._store = store

    async def get(self, device_id: str) -> Device | None:
        from azure.core.exceptions import ResourceNotFoundError

        table = await self._store.table(DEVICES_TABLE)
        try:
            entity = await table.get_entity(device_key(device_id), REGISTRY_ROW)
        except ResourceNotFoundError:
            return None
        return _from_entity(entity)

    async def apply(self, event: LifecycleEvent) -> tuple[Device | None, Device]:
        """Apply ``event`` to its device's entry; returns the entry before and after."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        table = await self._store.table(DEVICES_TABLE)
        key = device_key(event.device_id)
        for attempt in range(MAX_ATTEMPTS):
            try:
                entity = await table.get_entity(key, REGISTRY_ROW)
            except ResourceNotFoundError:
                entity = None
            before = _from_entity(entity) if entity is not None else None
            after = apply_event(before, event)
            if after == before:
                return before, after  # a duplicate, or older than what is stored
            try:
                if entity is None:
                    await table.create_entity(_to_entity(after))
                else:
                    await table.update_entity(
                        _to_entity(after), mode=UpdateMode.REPLACE,
                        etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified,
                    )
                return before, after
            except (ResourceExistsError, ResourceModifiedError):
                await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 - jitter
        raise ConcurrencyError(f"device {event.device_id!r} changed concurrently {MAX_ATTEMPTS} times")

    async def list(
        self, *, connected: bool | None = None, limit: int = 100, continuation_token: str | None = None
    ) -> tuple[list[Device], str | None]:
        """One page of devices, in key order, and the token of the next page."""
        table = await self._store.table(DEVICES_TABLE)
        query = "RowKey eq @row"
        parameters: dict[str, Any] = {"row": REGISTRY_ROW}
        if connected is not None:
            query += " and connected eq @connected"
            parameters["connected"] = connected
        scope = token_scope("list_devices", connected=connected)
        pages = table.query_entities(query, parameters=parameters, results_per_page=limit, select=["doc"]).by_page(
            continuation_token=await decode_token(self._store, scope, continuation_token)  # type: ignore[arg-type]
        )
        items: list[Device] = []
        async for page in pages:
            items = [_from_entity(e) async for e in page]
            break
        return items, await encode_token(self._store, scope, pages.continuation_token)  # type: ignore[attr-defined]
