"""What the Functions host sends the Python worker for each trigger kind this app
uses (the trigger's ``TypedData`` and its trigger metadata), and what it reads back
from an HTTP function's return value. The runtime turns these into the trigger
objects with azure-functions' converters; nothing here builds a trigger object.

The shapes follow the worker protocol and the capabilities the runtime announces:
``RawHttpBodyBytes`` (an HTTP body arrives as bytes), ``RpcHttpBodyOnly`` and
``RpcHttpTriggerMetadataRemoved`` (no ``rawBody``, no HTTP trigger metadata),
``TypedDataCollection`` (a batch as ``collection_bytes``/``collection_string``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from standins import rpc


def http_request(*, method: str, url: str, headers: Mapping[str, str], query: Mapping[str, str],
                 params: Mapping[str, str], body: bytes) -> Any:
    """An HTTP request: ``params`` are the route's values, ``query`` the query string's
    (repeated names joined with commas, empty values left out, as the host does)."""
    return rpc.TypedData(http=rpc.RpcHttp(method=method, url=url, headers=dict(headers), query=dict(query),
                                          params=dict(params), body=rpc.TypedData(bytes=body)))


@dataclass(frozen=True, slots=True)
class HttpResult:
    """An HTTP function's answer as the host reads it from the return value."""

    status: int
    headers: dict[str, str]
    body: bytes


def http_result(value: Any) -> HttpResult:
    """The host's reading of an HTTP function's ``return_value``: an ``RpcHttp``, or a
    plain string (a 200 with that text)."""
    kind = value.WhichOneof("data")
    if kind == "string":
        return HttpResult(200, {"content-type": "text/plain; charset=utf-8"}, value.string.encode())
    if kind != "http":
        raise ValueError(f"an HTTP function returned {kind!r}, which the host does not answer with")
    http = value.http
    body_kind = http.body.WhichOneof("data")
    body = b"" if body_kind is None else getattr(http.body, body_kind)
    if isinstance(body, str):
        body = body.encode()
    if http.cookies:
        raise ValueError("the app sets no cookies, and nothing here serves them")
    return HttpResult(int(http.status_code or 200), dict(http.headers), body)


def event_grid(document: Mapping[str, Any]) -> Any:
    """An Event Grid event (either schema) as the extension hands it on: its JSON."""
    return rpc.TypedData(json=json.dumps(document))


def timer(*, past_due: bool = False) -> Any:
    """A timer firing: the ``TimerInfo`` JSON (``Schedule``, ``ScheduleStatus``,
    ``IsPastDue``)."""
    return rpc.TypedData(json=json.dumps({"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None,
                                          "IsPastDue": past_due}))


def queue_message(*, body: str, message_id: str, dequeue_count: int, pop_receipt: str, inserted: datetime,
                  expires: datetime, next_visible: datetime) -> tuple[Any, dict[str, Any]]:
    """A queue message (its text, the host having decoded the base64 it was stored as)
    and its trigger metadata. Numbers and times go as JSON: the worker decodes no
    ``int`` TypedData in trigger metadata (``Datum.from_typed_data``)."""
    def when(moment: datetime) -> Any:
        return rpc.TypedData(json=json.dumps(moment.isoformat()))

    return rpc.TypedData(string=body), {
        "Id": rpc.TypedData(string=message_id), "DequeueCount": rpc.TypedData(json=json.dumps(dequeue_count)),
        "PopReceipt": rpc.TypedData(string=pop_receipt), "InsertionTime": when(inserted),
        "ExpirationTime": when(expires), "NextVisibleTime": when(next_visible),
    }
