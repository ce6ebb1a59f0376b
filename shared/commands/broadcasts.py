"""Broadcasts: ONE publish that the broker replicates to every subscribed device,
for fleet-wide notices; not tracked per device.

Topic ``broadcast/{name}``, or ``groups/{group}/broadcast/{name}`` when a group is
given (devices may subscribe to ``broadcast/#`` and to their own group's topics
only, by the client attribute ``group``); MQTT v5 message expiry = ``ttlSeconds``.

Table ``broadcasts``: ``PartitionKey`` = ``b``, ``RowKey`` = milliseconds counted
down + ``|`` + the broadcast id, so the audit trail reads newest first; the broadcast
in ``doc`` (split over binary properties: a 256 KiB payload fits). The row is
written before the publish and marked ``published`` after it, so every publish is
recorded; one whose publish failed stays with ``publishError`` and is not listed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson

from shared.commands.models import Broadcast, BroadcastRequest
from shared.platform.errors import PublishRefused, Unavailable
from shared.platform.paging import query_page, token_scope
from shared.platform.rows import joined_json, split_json, split_names
from shared.platform.storage import data_store
from shared.platform.storage_names import BROADCASTS_TABLE
from shared.platform.timestamps import MAX_TIMESTAMP, format_timestamp

_MAX_MS = int(MAX_TIMESTAMP.timestamp() * 1000)


def broadcast_topic(request: BroadcastRequest) -> str:
    if request.group:
        return f"groups/{request.group}/broadcast/{request.name}"
    return f"broadcast/{request.name}"


async def send_broadcast(request: BroadcastRequest, *, issued_by: str, now: datetime | None = None) -> Broadcast:
    from azure.data.tables import UpdateMode

    from shared.commands.transport import Publication, PublishError
    from shared.commands.transports import transport

    now = now or datetime.now(UTC)
    broadcast = Broadcast(broadcast_id=str(uuid.uuid4()), name=request.name, topic=broadcast_topic(request),
                          payload=request.payload, published_at=now,
                          expires_at=now + timedelta(seconds=request.ttl_seconds), issued_by=issued_by,
                          group=request.group)
    table = await data_store().table(BROADCASTS_TABLE)
    row = {"PartitionKey": "b", "RowKey": f"{_MAX_MS - int(now.timestamp() * 1000):015d}|{broadcast.broadcast_id}",
           **split_json("doc", broadcast.to_json_dict(), what="broadcast"), "published": False}
    await table.create_entity(row)
    payload = {"broadcastId": broadcast.broadcast_id, "name": broadcast.name, "payload": broadcast.payload,
               "issuedAt": format_timestamp(now), "expiresAt": format_timestamp(broadcast.expires_at)}
    try:
        await transport().publish(Publication(topic=broadcast.topic, payload=orjson.dumps(payload),
                                              expiry_seconds=request.ttl_seconds))
    except PublishError as exc:
        await table.update_entity({**row, "published": False, "publishError": exc.reason[:1024]},
                                  mode=UpdateMode.MERGE)
        detail = f"the broadcast could not be published: {exc.reason}"
        if exc.transient:
            raise Unavailable(detail, exc.retry_after) from None
        raise PublishRefused(detail) from None
    await table.update_entity({"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"], "published": True},
                              mode=UpdateMode.MERGE)
    return broadcast


async def list_broadcasts(*, limit: int, continuation_token: str | None) -> tuple[list[Broadcast], str | None]:
    """The published broadcasts, newest first."""
    store = data_store()
    table = await store.table(BROADCASTS_TABLE)
    entities, token = await query_page(store, table, "PartitionKey eq @pk and published eq @yes",
                                       {"pk": "b", "yes": True}, scope=token_scope("list_broadcasts"), limit=limit,
                                       select=split_names("doc"), continuation_token=continuation_token)
    return [Broadcast.model_validate(joined_json(e, "doc")) for e in entities], token
