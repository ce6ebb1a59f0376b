"""Entity-group transactions of creates and ETag-conditional replaces, framed here in
Azure Tables' ``$batch`` format (learn.microsoft.com/rest/api/storageservices/
performing-entity-group-transactions) and sent through the table client's own
pipeline, so its credential, retry policy and transport apply as to every request.

Why not ``TableClient.submit_transaction``: it frames each operation with
``email.message`` and reads the answer with ``email.parser``; in the bench's fleet
shape (100 devices a batch) that was about half of the 490 µs of worker CPU that each
more device in a batch cost. Here an operation is a few string joins and one
``orjson.dumps``, and the answer is split on its boundary.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import orjson
from azure.core.exceptions import HttpResponseError

_INT32 = range(-(2**31), 2**31)


class TransactionRefused(HttpResponseError):
    """An operation of the transaction was refused (``index`` says which, ``status_code``
    why: 409 for a create of a row that exists, 412 for a replace on a stale ETag);
    Azure applied none of it."""

    def __init__(self, status: int, index: int, message: str) -> None:
        super().__init__(message=f"transaction refused at operation {index} ({status}): {message}")
        self.status_code, self.index = status, index


async def submit(table: Any, operations: Sequence[tuple[dict[str, Any], str | None]]) -> list[str]:
    """Apply ``operations`` (each an entity of one partition, created when its ETag is
    None, else replaced on that ETag) at once; the rows' new ETags, in order.
    :class:`TransactionRefused` when one is refused; HttpResponseError for the rest."""
    from azure.core.rest import HttpRequest

    base = table.url.rstrip("/")
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    parts = [_operation(base, table.table_name, entity, etag) for entity, etag in operations]
    body = (f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode()
            + b"".join(f"--{changeset}\r\n".encode() + part for part in parts)
            + f"--{changeset}--\r\n\r\n--{batch}--\r\n".encode())
    request = HttpRequest("POST", f"{base}/$batch", content=body, headers={
        "x-ms-version": table.api_version, "DataServiceVersion": "3.0", "MaxDataServiceVersion": "3.0;NetFx",
        "Content-Type": f"multipart/mixed; boundary={batch}", "Accept": "application/json"})
    # The generated client's pipeline, as the SDK's own transactions send (streamed: its
    # content decoding knows no multipart answer).
    response = await table._client.send_request(request, stream=True)
    await response.read()
    if response.status_code != 202:
        raise HttpResponseError(response=response)
    return _etags(response.headers.get("Content-Type", ""), response.content, len(parts))


def _operation(base: str, table_name: str, entity: dict[str, Any], etag: str | None) -> bytes:
    if etag is None:
        line, condition = f"POST {base}/{table_name} HTTP/1.1", "Prefer: return-no-content\r\n"
    else:
        keys = f"PartitionKey='{_key(entity['PartitionKey'])}',RowKey='{_key(entity['RowKey'])}'"
        line, condition = f"PUT {base}/{table_name}({keys}) HTTP/1.1", f"If-Match: {etag}\r\n"
    head = (f"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n{line}\r\n"
            f"Content-Type: application/json\r\nAccept: application/json;odata=nometadata\r\n"
            f"DataServiceVersion: 3.0\r\n{condition}\r\n")
    return head.encode() + _json(_odata(entity)) + b"\r\n"


def _json(document: dict[str, Any]) -> bytes:
    """ASCII JSON, as the SDK writes (``json.dumps``): the storage emulator refuses a
    part with raw UTF-8 in it. orjson first; the rare text beyond ASCII (a device key
    of non-ASCII characters) through the standard library's escaping."""
    data = orjson.dumps(document)
    return data if data.isascii() else json.dumps(document, separators=(",", ":")).encode()


def _key(value: str) -> str:
    """A key in a URL: quotes doubled, then percent-encoded (as the SDK writes it)."""
    return quote(value.replace("'", "''"), safe="")


def _odata(entity: dict[str, Any]) -> dict[str, Any]:
    """The entity in OData JSON, with the types JSON cannot say annotated."""
    document: dict[str, Any] = {}
    for name, value in entity.items():
        if isinstance(value, bytes):
            document[name], document[f"{name}@odata.type"] = base64.b64encode(value).decode(), "Edm.Binary"
        elif isinstance(value, bool | str):
            document[name] = value
        elif isinstance(value, int):
            if value in _INT32:
                document[name] = value
            else:
                document[name], document[f"{name}@odata.type"] = str(value), "Edm.Int64"
        elif isinstance(value, float):
            document[name], document[f"{name}@odata.type"] = value, "Edm.Double"
        elif value is not None:
            raise TypeError(f"property {name!r}: {type(value).__name__} is not written in transactions here")
    return document


def _etags(content_type: str, body: bytes, count: int) -> list[str]:
    """The ETags of the changeset's answers; TransactionRefused for a refusal."""
    changeset = _boundary(body.split(b"\r\n\r\n", 1)[0].decode("latin-1")) or _boundary(content_type)
    etags: list[str] = []
    for part in body.split(f"--{changeset}".encode())[1:]:
        _, _, http = part.partition(b"\r\n\r\n")  # after the part's own headers
        if not http.startswith(b"HTTP/"):
            continue
        head, _, content = http.partition(b"\r\n\r\n")
        status_line, *headers = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        if not 200 <= status < 300:
            raise _refusal(status, content)
        etags += [h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("etag:")]
    if len(etags) != count:
        raise HttpResponseError(message=f"the transaction's answer holds {len(etags)} ETags for {count} operations")
    return etags


def _boundary(content_type: str) -> str | None:
    for field in content_type.replace("\r\n", ";").split(";"):
        name, _, value = field.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip('"')
    return None


def _refusal(status: int, content: bytes) -> TransactionRefused:
    """The refusal's index and message: the service writes ``{index}:{message}``."""
    try:
        error = orjson.loads(content.strip() or b"{}")
        message = str((error.get("odata.error") or {}).get("message", {}).get("value", "")) or str(error)
    except (orjson.JSONDecodeError, AttributeError):
        message = content.decode("utf-8", "replace")[:500]
    index, _, text = message.partition(":")
    return TransactionRefused(status, int(index) if index.isdigit() else 0, text.strip() or message)
