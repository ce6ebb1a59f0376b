"""A Table row changed by a pure merge, conditionally on its ETag.

Concurrent writers of one row never lose each other's change: each reads, merges
and writes only if the row is unchanged, else reads again. The row and its ETag
are remembered in the store's RowMemory, so a process that is the row's only writer
(an Event Hubs partition's owner writes its devices' rows) skips the read; when
the memory is stale the write fails on the ETag and the row is read again, so
correctness never depends on it.

A row's JSON may exceed what one property holds (64 KiB): :func:`split_json` spreads
it over several binary properties, :func:`joined_json` reads it back.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.platform.errors import Contention, InvalidInput
from shared.platform.storage import DataStore

Merge = Callable[[dict[str, Any] | None], dict[str, Any] | None]
MAX_ATTEMPTS = 8
# Rows remembered per process before the memory starts afresh (a cache, so a crude bound
# will do), and the bytes of their text: a row may take 1 MiB, 20 000 of them 20 GB, and
# an instance of the Consumption plan has 1.5 GB.
MEMO_LIMIT = 20_000
MEMO_BYTES = 256 * 1024 * 1024
# Azure Tables keeps at most 64 KiB in a binary property (a string property holds 32 K
# UTF-16 characters: half as much ASCII) and 1 MiB in an entity.
PROPERTY_BYTES = 64 * 1024
# The most JSON a row keeps in binary properties: 11 of them. On the wire they travel
# as base64 (4/3: 939 KiB), which is what the storage emulator counts against the
# 1 MiB entity, so 85 KiB remain for the keys and the other columns.
ROW_JSON_BYTES = 11 * PROPERTY_BYTES
# How deep a request body or a device's answer may nest arrays and objects. orjson
# writes at most 254 levels (deeper is its "Recursion limit reached": a 500 after a
# body of 254 to 1 023 levels had been read), and what came is written a level or two
# deeper (a payload in the command's row, its MQTT message and a fleet job's row; an
# answer under ``lateResponse``); 64 keeps every write far from 254 and is twice what
# a stream message's unknown field may nest (32).
MAX_JSON_DEPTH = 64


def contended(what: str, times: int = MAX_ATTEMPTS) -> Iterator[int]:
    """The attempts of a read-decide-conditional-write loop: 0, 1, ... ``times - 1``,
    then :class:`Contention` saying ``what`` kept changing. The loop ``return``s once
    its write wins, and awaits :func:`backoff` before trying again."""
    yield from range(times)
    raise Contention(f"{what} changed {times} times")


async def backoff(attempt: int, step: float = 0.01) -> None:
    """Full jitter under an exponential ceiling (10 ms, 20 ms, ...): writers that lost
    to each other do not meet again at once."""
    await asyncio.sleep(random.uniform(0, step * 2**attempt))  # noqa: S311 - jitter, not a secret


Remembered = tuple[dict[str, Any] | None, str | None]  # a row's properties (None: missing) and ETag


@dataclass
class RowMemory:
    """The rows this process wrote or read last, by (table, partition, row), and the
    bytes of their text."""

    rows: dict[tuple[str, str, str], Remembered] = field(default_factory=dict)
    used: int = 0


async def merge_row(store: DataStore, table_name: str, partition_key: str, row_key: str, merge: Merge) -> bool:
    """Write ``merge(current properties or None)`` to the row unless it returns None
    (nothing to change). Returns whether it wrote."""
    from azure.core.exceptions import ResourceNotFoundError

    table = await store.table(table_name)
    memory, key = store.cache(RowMemory), (table_name, partition_key, row_key)
    for attempt in contended(f"row {partition_key!r}/{row_key!r} of table {table_name}"):
        remembered = memory.rows.get(key)
        if remembered is None:
            try:
                entity = await table.get_entity(partition_key, row_key)
                remembered = (properties(entity),
                              entity.metadata["etag"])
            except ResourceNotFoundError:
                remembered = (None, None)
        current, etag = remembered
        new = merge(dict(current) if current is not None else None)
        if new is None:
            _remember(memory, key, remembered)
            return False
        written = await write_if_unchanged(table, {"PartitionKey": partition_key, "RowKey": row_key, **new}, etag)
        if written is None:
            memory.rows.pop(key, None)  # someone else wrote it: read it again
            await backoff(attempt)
            continue
        _remember(memory, key, (new, written))
        return True
    raise AssertionError("contended() raises when the attempts run out")


def properties(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A row's properties, its keys left out."""
    return {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}


async def write_if_unchanged(table: Any, row: dict[str, Any], etag: str | None) -> str | None:
    """Write ``row`` whole if it is still as read: created when ``etag`` is None (read
    as missing), else replaced on that ETag. Returns the new ETag, or None when
    another writer came first (the caller reads again and decides again)."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
    from azure.data.tables import UpdateMode

    try:
        if etag is None:
            written = await table.create_entity(row)
        else:
            written = await table.update_entity(row, mode=UpdateMode.REPLACE, etag=etag,
                                                match_condition=MatchConditions.IfNotModified)
    except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
        return None
    return str(written["etag"])


def _remember(memory: RowMemory, key: tuple[str, str, str], remembered: Remembered) -> None:
    used = memory.used - _size(memory.rows.get(key)) + _size(remembered)
    if len(memory.rows) >= MEMO_LIMIT or used > MEMO_BYTES:
        memory.rows.clear()
        used = _size(remembered)
    memory.rows[key] = remembered
    memory.used = used


def _size(remembered: Remembered | None) -> int:
    row = remembered[0] if remembered is not None else None
    return sum(len(v) for v in row.values() if isinstance(v, str | bytes)) if row else 0


def split_json(name: str, value: Any, *, what: str = "row") -> dict[str, bytes]:
    """``value`` as UTF-8 JSON in binary properties ``name``, ``name1``, ... of at most
    64 KiB each; InvalidInput naming ``what`` beyond ROW_JSON_BYTES."""
    data = orjson.dumps(value)
    if len(data) > ROW_JSON_BYTES:
        raise InvalidInput(f"the {what} would take {len(data)} bytes of JSON, more than a table row keeps "
                           f"({ROW_JSON_BYTES // 1024} KiB)")
    return {split_names(name)[i]: data[start:start + PROPERTY_BYTES]
            for i, start in enumerate(range(0, len(data), PROPERTY_BYTES))}


def split_names(name: str) -> list[str]:
    """The properties :func:`split_json` may use for ``name`` (to select them)."""
    return [name, *(f"{name}{i}" for i in range(1, ROW_JSON_BYTES // PROPERTY_BYTES))]


def joined_json(row: Mapping[str, Any], name: str) -> Any:
    """What :func:`split_json` wrote as ``name``, or the JSON text of a string property
    ``name`` (as rows written before it hold)."""
    if isinstance(row[name], str):
        return orjson.loads(row[name])
    return orjson.loads(b"".join(row.get(part) or b"" for part in split_names(name)))


def nests_deeper(value: Any, levels: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``levels`` deep (``{}`` is 1,
    ``{"a": [1]}`` 2). The recursion stops at ``levels``, so it cannot overflow; 9 ms
    for 40 000 small lists (a generator-fed stack took 50)."""
    return isinstance(value, dict | list) and (levels < 1 or _deeper(value, levels - 1))


def _deeper(node: dict[str, Any] | list[Any], left: int) -> bool:
    for child in node.values() if isinstance(node, dict) else node:
        if isinstance(child, dict | list) and (left == 0 or _deeper(child, left - 1)):
            return True
    return False
