"""Dead letters: one JSON document per message or event that can never be processed.

Container ``deadletter``, blob ``{stream}/{yyyy}/{MM}/{dd}/{id}.json``; the day is
the message's own (enqueued or event time) and the id a hash of its bytes and
origin, so a redelivered message rewrites the same blob instead of adding one.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.platform.storage import DataStore
from shared.platform.storage_names import DEADLETTER_CONTAINER


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


async def write_dead_letter(
    store: DataStore, *, stream: str, reason: str, errors: list[dict[str, Any]], body: bytes,
    origin: dict[str, Any], day: datetime, received_at: datetime,
) -> str:
    """Write one dead letter; returns its blob name."""
    digest = hashlib.sha256(orjson.dumps(origin, option=orjson.OPT_SORT_KEYS) + b"\n" + body).hexdigest()[:32]
    name = f"{stream}/{day.astimezone(UTC):%Y/%m/%d}/{digest}.json"
    document = dead_letter_document(stream=stream, reason=reason, errors=errors, body=body, origin=origin,
                                    received_at=received_at)
    container = await store.container(DEADLETTER_CONTAINER)
    from azure.storage.blob import ContentSettings

    await container.upload_blob(name, orjson.dumps(document), overwrite=True,
                                content_settings=ContentSettings(content_type="application/json"))
    return name
