"""Commands in Table storage.

Table ``commands``:

* a command: ``PartitionKey`` = the device's key, ``RowKey`` = ``c|`` + milliseconds
  counted down + ``|`` + the command id, so a device's commands read newest first;
  the command as the API returns it in ``doc`` (split over binary properties by
  :func:`shared.platform.rows.split_json`: a 256 KiB payload and the device's
  answers fit; a command that would take more than 704 KiB is InvalidInput), and
  ``status``, ``jobId`` columns.
  The command id is a UUID version 7 (its first 48 bits are its creation time), so
  the row key follows from the id alone.
* an idempotency key: same partition, ``RowKey`` = ``k|`` + SHA-256 of the key;
  ``commandId`` and ``bodyHash``. It is inserted in ONE transaction with its
  command: of concurrent requests with one key, exactly one creates a command.
* what is due: ``PartitionKey`` = ``~due|`` (no device key starts with ``~``) + the minute the command expires
  (``yyyyMMddHHmm``), ``RowKey`` = the command id; ``deviceId``. The expiry timer
  reads the minutes that have passed, so its cost grows with the commands due.

Every change of a command is written conditionally on its row's ETag.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.commands.models import TERMINAL, Command
from shared.platform import metrics
from shared.platform.errors import Contention
from shared.platform.keys import device_key
from shared.platform.paging import query_page, token_scope
from shared.platform.rows import backoff, contended, joined_json, split_json, split_names
from shared.platform.storage import DataStore
from shared.platform.storage_names import COMMANDS_TABLE
from shared.platform.timestamps import MAX_TIMESTAMP

_MAX_MS = int(MAX_TIMESTAMP.timestamp() * 1000)
MAX_ATTEMPTS = 8


def new_command_id(now: datetime) -> str:
    """A UUID version 7: 48 bits of Unix milliseconds, then random bits."""
    ms = int(now.timestamp() * 1000)
    value = (ms << 80) | (0x7 << 76) | (int.from_bytes(os.urandom(10), "big") & ((1 << 76) - 1))
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # the RFC 9562 variant
    return str(uuid.UUID(int=value))


def command_row(command_id: str) -> str | None:
    """The row key of a command; None for an id this API never issues (not a UUID
    version 7 in its canonical form), which is therefore no command (404)."""
    try:
        parsed = uuid.UUID(command_id)
    except ValueError:
        return None
    if parsed.version != 7 or str(parsed) != command_id:
        return None
    return f"c|{_MAX_MS - (parsed.int >> 80):015d}|{command_id}"


def body_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _key_row(idempotency_key: str) -> str:
    return "k|" + hashlib.sha256(idempotency_key.encode("utf-8", "surrogatepass")).hexdigest()


def _entity(command: Command) -> dict[str, Any]:
    row = command_row(command.command_id)
    assert row is not None, "the command's id was made by new_command_id"
    entity = {"PartitionKey": device_key(command.device_id), "RowKey": row,
              **split_json("doc", command.to_json_dict(), what="command"), "status": command.status}
    if command.job_id:
        entity["jobId"] = command.job_id
    return entity


def _command(entity: dict[str, Any]) -> Command:
    return Command.model_validate(joined_json(entity, "doc"))


class CommandStore:
    def __init__(self, store: DataStore) -> None:
        self._store = store

    async def create(self, command: Command, *,
                     body: dict[str, Any] | None = None) -> tuple[Command, bool, str | None]:
        """Store a new command; returns it, True and its row's ETag. With an
        idempotency key, the key's row and the command are inserted in one
        transaction: when the key was used already, the command it made and False
        come back instead (KeyConflict when the key came with another body)."""
        from azure.data.tables import TableTransactionError

        table = await self._store.table(COMMANDS_TABLE)
        entity = _entity(command)
        if command.idempotency_key is None:  # a plain insert costs less than a transaction of one
            written = await table.create_entity(entity)
            return command, True, str(written["etag"])
        key = {"PartitionKey": entity["PartitionKey"], "RowKey": _key_row(command.idempotency_key),
               "commandId": command.command_id, "bodyHash": body_hash(body or {})}
        try:
            results = await table.submit_transaction([("create", key), ("create", entity)])
        except TableTransactionError as exc:
            if exc.status_code != 409:
                raise
            return await self._by_key(command, body or {}), False, None
        return command, True, str(results[-1]["etag"])

    async def _by_key(self, command: Command, body: dict[str, Any]) -> Command:
        assert command.idempotency_key is not None
        table = await self._store.table(COMMANDS_TABLE)
        entity = await table.get_entity(device_key(command.device_id), _key_row(command.idempotency_key))
        if entity["bodyHash"] != body_hash(body):
            raise KeyConflict("Idempotency-Key was used for another request to this device")
        original = await self.get(command.device_id, str(entity["commandId"]))
        if original is None:  # its transaction wrote both rows, so this cannot be
            raise Contention("the command of an idempotency key is missing")
        return original

    async def locate(self, command: Command) -> None:
        """When the command is due (for the timer), written before the command (while
        the device is read): a due row without its command is forgotten by the timer."""
        table = await self._store.table(COMMANDS_TABLE)
        await table.upsert_entity({"PartitionKey": due_partition(command.expires_at), "RowKey": command.command_id,
                                   "deviceId": command.device_id})

    async def get(self, device_id: str, command_id: str) -> Command | None:
        from azure.core.exceptions import ResourceNotFoundError

        row = command_row(command_id)
        if row is None:
            return None
        table = await self._store.table(COMMANDS_TABLE)
        try:
            return _command(await table.get_entity(device_key(device_id), row))
        except ResourceNotFoundError:
            return None

    async def change(self, device_id: str, command_id: str, decide: Callable[[Command], Command | None], *,
                     known: tuple[Command, str] | None = None) -> tuple[Command | None, bool]:
        """Apply ``decide`` to the stored command, conditionally on its ETag, until
        it wins or declines; returns the command as it now stands (None if there is
        none) and whether this call changed it. ``known``: the command and its row's
        ETag as the caller just wrote them, which saves the first read (a 412 reads it
        again)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        row = command_row(command_id)
        if row is None:
            return None, False
        table = await self._store.table(COMMANDS_TABLE)
        for attempt in contended(f"command {command_id}", MAX_ATTEMPTS):
            if known is not None and attempt == 0:
                current, etag = known
            else:
                try:
                    entity = await table.get_entity(device_key(device_id), row)
                except ResourceNotFoundError:
                    return None, False
                current, etag = _command(entity), str(entity.metadata["etag"])
            new = decide(current)
            if new is None:
                return current, False
            try:
                await table.update_entity(_entity(new), mode=UpdateMode.REPLACE, etag=etag,
                                          match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError:
                await backoff(attempt)
                continue
            if new.status in TERMINAL and current.status not in TERMINAL:  # the one write that ended it
                metrics.record(metrics.COMPLETED, 1, status=new.status)
            return new, True
        raise AssertionError("contended() raises when the attempts run out")

    async def page(self, device_id: str, *, status: str | None, limit: int,
                   continuation_token: str | None) -> tuple[list[Command], str | None]:
        """A device's commands, newest first."""
        table = await self._store.table(COMMANDS_TABLE)
        query = "PartitionKey eq @pk and RowKey gt @low and RowKey lt @high"
        parameters: dict[str, Any] = {"pk": device_key(device_id), "low": "c|", "high": "c}"}
        if status is not None:
            query += " and status eq @status"
            parameters["status"] = status
        scope = token_scope("list_commands", deviceId=device_id, status=status)
        entities, token = await query_page(self._store, table, query, parameters, scope=scope, limit=limit,
                                           select=split_names("doc"), continuation_token=continuation_token)
        return [_command(e) for e in entities], token

    async def pending(self, device_id: str) -> list[tuple[Command, str]]:
        """The device's pending commands, oldest first (the order they must go in),
        each with its row's ETag (for the conditional write that claims it)."""
        table = await self._store.table(COMMANDS_TABLE)
        query = "PartitionKey eq @pk and RowKey gt @low and RowKey lt @high and status eq @status"
        found = [(_command(e), str(e.metadata["etag"])) async for e in table.query_entities(
            query, parameters={"pk": device_key(device_id), "low": "c|", "high": "c}", "status": "pending"},
            select=split_names("doc"))]
        return sorted(found, key=lambda found: (found[0].created_at, found[0].command_id))

    async def due(self, now: datetime) -> list[tuple[str, str, str]]:
        """(partition, device id, command id) of every due index row up to ``now``."""
        table = await self._store.table(COMMANDS_TABLE)
        query = "PartitionKey ge @low and PartitionKey le @high"
        found = []
        async for entity in table.query_entities(query, parameters={"low": "~due|", "high": due_partition(now)},
                                                 select=["PartitionKey", "RowKey", "deviceId"]):
            found.append((str(entity["PartitionKey"]), str(entity["deviceId"]), str(entity["RowKey"])))
        return found

    async def forget_due(self, partition: str, command_id: str) -> None:
        table = await self._store.table(COMMANDS_TABLE)
        await table.delete_entity(partition, command_id)


def due_partition(moment: datetime) -> str:
    return "~due|" + moment.astimezone(UTC).strftime("%Y%m%d%H%M")


class KeyConflict(Exception):
    """An idempotency key reused with another body (409)."""
