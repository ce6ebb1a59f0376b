"""Dead letters: one JSON document per message or event that can never be processed,
and the index row that lists it.

Blob: container ``deadletter``, ``{stream}/{yyyy}/{MM}/{dd}/{hash}.json``; the day is
the message's own (enqueued or event time) and the hash one of its bytes and origin,
so a redelivered message finds the same blob instead of adding one. Its id in the
API is ``{yyyyMMdd}-{hash}``: with the stream it names the blob, so a read is one
point read and needs no index.

A message rejected again keeps its blob: it is created only if missing
(``If-None-Match: *``); when it exists, :func:`rejected_again` decides, and a
rewrite is conditional on the ETag read. An ``internal:`` reason (the last retry of
a batch gives up on every event it holds) never replaces a stored dead letter, whose
reason says more; any other rejection replaces the reason and errors, keeping the
first ``receivedAt`` and any ``redrivenAt``, so a message is listed once, where it
first arrived, and is never redriven twice.

Index: table ``deadletters``, one row per dead letter, ``PartitionKey`` = the stream,
``RowKey`` = the first ``receivedAt`` in milliseconds counted down from 2100 (15
digits) + ``|{stream}|{id}``: a stream's dead letters newest first are one range
of one partition, and the four streams' rows sort alike, so a listing of all streams
merges four such ranges. Columns ``deadLetterId``, ``reason`` (at most 1024
characters), ``receivedAt``, ``deviceId`` (when the bytes name one), ``position``
(an array element's) and ``redrivenAt``. The row is upserted (merge) after the blob
is written, every time, so a row a crash left out is written by the redelivery.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.platform.errors import InvalidInput
from shared.platform.keys import validate_device_id
from shared.platform.rows import contended
from shared.platform.storage import DataStore
from shared.platform.storage_names import DEADLETTER_CONTAINER, DEADLETTERS_TABLE
from shared.platform.timestamps import MAX_TIMESTAMP, MIN_TIMESTAMP

STREAMS = ("telemetry", "inference", "command-responses", "lifecycle")
INTERNAL = "internal:"
# Index rows keep this much of a reason (a reason is one sentence; the blob keeps it whole).
MAX_INDEXED_REASON = 1024
# Rewrites of one blob that may lose the race to another writer before the invocation fails.
MAX_ATTEMPTS = 8
# Bodies larger than this are not parsed for a device id (Event Hubs allows 1 MiB per event).
_MAX_PARSED_BODY = 1024 * 1024

_MAX_MS = int(MAX_TIMESTAMP.timestamp() * 1000)
# yyyyMMdd-{hash}; a month and day that no calendar has (0231) match and name no blob (404).
DEAD_LETTER_ID_PATTERN = "^([0-9]{4})(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])-([0-9a-f]{32})$"
_ID = re.compile(DEAD_LETTER_ID_PATTERN)
# The device topics (infra's topic spaces); a device id may hold "/".
_DEVICE_TOPIC = re.compile(r"devices/(.+)/(?:telemetry|inference|commands/[^/]+/response)", re.DOTALL)


def dead_letter_document(
    *, stream: str, reason: str, errors: list[dict[str, Any]], body: bytes, origin: dict[str, Any],
    received_at: datetime,
) -> dict[str, Any]:
    """The contract's shape; ``origin`` is e.g. ``{"eventHub": {...}}`` or ``{"eventGrid": {...}}``."""
    document: dict[str, Any] = {"stream": stream, "reason": reason, "errors": errors}
    try:
        document["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        document["bodyBase64"] = base64.b64encode(body).decode("ascii")
    document.update(origin)
    document["receivedAt"] = received_at.astimezone(UTC).isoformat()
    return document


def body_of(document: dict[str, Any]) -> bytes:
    """The original bytes a dead letter holds."""
    if "bodyBase64" in document:
        return base64.b64decode(document["bodyBase64"])
    return str(document.get("body", "")).encode("utf-8")


# --------------------------------------------------------------------------- ids and names


def dead_letter_id(*, body: bytes, origin: dict[str, Any], day: datetime) -> str:
    """``{yyyyMMdd}-{hash}``: the message's day and a hash of its origin and bytes."""
    digest = hashlib.sha256(orjson.dumps(origin, option=orjson.OPT_SORT_KEYS) + b"\n" + body).hexdigest()[:32]
    return f"{day.astimezone(UTC):%Y%m%d}-{digest}"


def parse_dead_letter_id(text: object) -> tuple[str, str, str, str]:
    """(yyyy, MM, dd, hash) of an id in the form this API issues; InvalidInput otherwise."""
    match = _ID.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput("deadLetterId must be yyyyMMdd-{32 lowercase hex digits}, as list_dead_letters gives it")
    year, month, day, digest = match.groups()
    return year, month, day, digest


def blob_name(stream: str, dead_letter_id: str) -> str:
    """The blob of dead letter ``dead_letter_id`` of ``stream`` (both checked)."""
    if stream not in STREAMS:
        raise InvalidInput("stream must be one of " + ", ".join(STREAMS))
    year, month, day, digest = parse_dead_letter_id(dead_letter_id)
    return f"{stream}/{year}/{month}/{day}/{digest}.json"


def index_keys(stream: str, dead_letter_id: str, received_at: datetime) -> tuple[str, str]:
    """(PartitionKey, RowKey) of a dead letter's index row."""
    return stream, f"{received_key(received_at)}|{stream}|{dead_letter_id}"


def received_key(moment: datetime) -> str:
    """A moment as the first part of a RowKey: milliseconds counted down, so newer sorts first."""
    return f"{_MAX_MS - int(moment.timestamp() * 1000):015d}"


# --------------------------------------------------------------------------- decisions (pure)


def rejected_again(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """What a stored dead letter becomes when its message is rejected again with
    ``new``; None keeps it as it is. An ``internal:`` reason says only that the batch
    failed, so it never replaces what the stored one says (a validation reason and
    its errors, or an internal reason that came first). Otherwise the newest
    reason wins, with the first ``receivedAt`` and any ``redrivenAt`` kept."""
    if str(new.get("reason", "")).startswith(INTERNAL):
        return None
    kept: dict[str, Any] = {key: stored[key] for key in ("receivedAt", "redrivenAt") if key in stored}
    return {**new, **kept}


def device_of(stream: str, body: bytes) -> str | None:
    """The device a dead letter's bytes name, for listing by device; None when they
    name none (not JSON, no topic, no id). A routed message's topic is what the
    broker authenticated, so it wins over a ``deviceId`` the payload claims."""
    if len(body) > _MAX_PARSED_BODY:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    candidates: list[object]
    if stream == "lifecycle":
        data = document.get("data")
        candidates = [data.get("clientAuthenticationName") if isinstance(data, dict) else None]
    else:
        subject = document.get("subject") if "specversion" in document else None
        topic = _DEVICE_TOPIC.fullmatch(subject) if isinstance(subject, str) else None
        candidates = [topic.group(1) if topic else None, document.get("deviceid"), document.get("deviceId")]
    for candidate in candidates:
        try:
            return validate_device_id(candidate)
        except InvalidInput:
            continue
    return None


def index_row(stream: str, dead_letter_id: str, document: dict[str, Any], device_id: str | None) -> dict[str, Any]:
    """The index row of a stored dead letter."""
    received_at = datetime.fromisoformat(document["receivedAt"])
    partition, row = index_keys(stream, dead_letter_id, received_at)
    entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": row, "deadLetterId": dead_letter_id,
                              "reason": str(document.get("reason", ""))[:MAX_INDEXED_REASON],
                              "receivedAt": document["receivedAt"]}
    position = (document.get("eventHub") or {}).get("position")
    optional = {"deviceId": device_id, "position": position, "redrivenAt": document.get("redrivenAt")}
    entity.update({key: value for key, value in optional.items() if value is not None})
    return entity


# --------------------------------------------------------------------------- storage


async def write_dead_letter(
    store: DataStore, *, stream: str, reason: str, errors: list[dict[str, Any]], body: bytes,
    origin: dict[str, Any], day: datetime, received_at: datetime,
) -> str:
    """Write one dead letter and its index row (see the module); returns its blob name."""
    if not MIN_TIMESTAMP <= day < MAX_TIMESTAMP:  # an event's own time may be anything: name it by arrival
        day = received_at
    letter_id = dead_letter_id(body=body, origin=origin, day=day)
    name = blob_name(stream, letter_id)
    document = dead_letter_document(stream=stream, reason=reason, errors=errors, body=body, origin=origin,
                                    received_at=received_at)
    kept = await _store(store, name, document)
    table = await store.table(DEADLETTERS_TABLE)
    from azure.data.tables import UpdateMode

    await table.upsert_entity(index_row(stream, letter_id, kept, device_of(stream, body)), mode=UpdateMode.MERGE)
    return name


async def _store(store: DataStore, name: str, document: dict[str, Any]) -> dict[str, Any]:
    """Create the blob, or decide about the one stored; returns the document kept."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

    blob = (await store.container(DEADLETTER_CONTAINER)).get_blob_client(name)
    for _ in contended(f"dead letter {name}", MAX_ATTEMPTS):
        try:
            await blob.upload_blob(orjson.dumps(document), overwrite=False, content_settings=json_content())
            return document
        except ResourceExistsError:
            pass
        try:
            download = await blob.download_blob()
            stored, etag = orjson.loads(await download.readall()), download.properties.etag
        except ResourceNotFoundError:
            continue  # gone between the two requests: create it again
        new = rejected_again(stored, document)
        if new is None:
            return stored  # type: ignore[no-any-return]
        try:
            await blob.upload_blob(orjson.dumps(new), overwrite=True, etag=etag,
                                   match_condition=MatchConditions.IfNotModified, content_settings=json_content())
        except (ResourceModifiedError, ResourceNotFoundError):
            continue  # another writer (or a redrive's mark) came first: decide again
        return new
    raise AssertionError("contended() raises when the attempts run out")


def json_content() -> Any:
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="application/json")
