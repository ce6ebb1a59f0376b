"""Continuation tokens: opaque to clients, tamper-evident, bound to their query.

A token is ``base64url(next keys as JSON) "." base64url(HMAC-SHA256)``; the MAC
covers the next keys and the *scope*, the operation and the filters of the query the
token continues (:func:`token_scope`). A token the API did not issue, one altered in
any byte, or one issued for another query (``connected=true`` used with
``connected=false``) is refused with a 400 before storage is queried, so a client
can neither start a scan at keys of its choosing nor carry a token across filters.

The HMAC key is 32 random bytes kept in table ``appmeta`` (row ``paging`` /
``tokenKey``), so every instance signs alike and tokens survive restarts without a
setting. The first instance to need it inserts it; an insert that loses the race
fails on conflict and reads the winner's key. Each process reads it once, so to
rotate the key delete the row and restart the app (tokens already issued are then
refused).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import weakref
from collections.abc import Mapping
from typing import Any

import orjson

from shared.platform.errors import InvalidInput
from shared.platform.storage import DataStore
from shared.platform.storage_names import APP_META_TABLE

KEY_PARTITION, KEY_ROW = "paging", "tokenKey"
KEY_BYTES = 32
MAX_TOKEN_LENGTH = 4096
_MAC_TEXT_LENGTH = 43  # 32 bytes in unpadded base64url
_TOKEN = re.compile(rf"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{{{_MAC_TEXT_LENGTH}}}")
_DOMAIN = b"edge-cloud-messaging continuation token v1\x00"

NOT_ISSUED = "continuationToken is not a token this API issued for this query"

_keys: weakref.WeakKeyDictionary[DataStore, bytes] = weakref.WeakKeyDictionary()

NextKeys = Mapping[str, str | None]


def token_scope(operation: str, **filters: str | int | bool | None) -> str:
    """The query a token continues: the operation and its filters (not the page
    size, which a client may change between pages), in one canonical string."""
    return orjson.dumps([operation, filters], option=orjson.OPT_SORT_KEYS).decode()


async def query_page(store: DataStore, table: Any, query: str, parameters: dict[str, Any], *, scope: str,
                     limit: int, select: list[str], continuation_token: str | None,
                     ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``query`` on ``table`` (a TableClient), from where ``continuation_token``
    left off, and the token of the next page (None after the last), both bound to ``scope``."""
    pages = table.query_entities(query, parameters=parameters, results_per_page=limit, select=select).by_page(
        continuation_token=await decode_token(store, scope, continuation_token))
    entities: list[dict[str, Any]] = []
    async for page in pages:
        entities = [e async for e in page]
        break
    return entities, await encode_token(store, scope, pages.continuation_token)


async def encode_token(store: DataStore, scope: str, next_keys: NextKeys | None) -> str | None:
    """The token of the page after this one; None when this page was the last."""
    if not next_keys:
        return None
    payload = _b64(orjson.dumps(dict(next_keys), option=orjson.OPT_SORT_KEYS))
    return f"{payload}.{_mac(await token_key(store), scope, payload)}"


async def decode_token(store: DataStore, scope: str, text: str | None) -> dict[str, str | None] | None:
    """The next keys ``text`` carries, None when absent (the first page);
    InvalidInput unless this API issued ``text`` for this ``scope``."""
    if text is None:
        return None
    if len(text) > MAX_TOKEN_LENGTH or not _TOKEN.fullmatch(text):
        raise _not_issued()
    payload, _, mac = text.partition(".")
    if not hmac.compare_digest(mac, _mac(await token_key(store), scope, payload)):
        raise _not_issued()
    keys: dict[str, str | None] = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return keys  # what encode_token signed


def _not_issued() -> InvalidInput:
    """The refusal, in the shape of :mod:`shared.platform.http`'s query parameter errors."""
    rule = NOT_ISSUED.removeprefix("continuationToken ")
    return InvalidInput(NOT_ISSUED, errors=[{"loc": ["query", "continuationToken"], "msg": rule,
                                             "type": "value_error"}])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _mac(key: bytes, scope: str, payload: str) -> str:
    """MAC of the payload's text as sent, so a second spelling of the same bytes is refused too."""
    message = _DOMAIN + scope.encode() + b"\x00" + payload.encode("ascii")
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


async def token_key(store: DataStore) -> bytes:
    """The account's token key: read once per process, created by the first caller ever."""
    key = _keys.get(store)
    if key is None:
        key = _keys[store] = await _load_or_create_key(store)
    return key


async def _load_or_create_key(store: DataStore) -> bytes:
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    table = await store.table(APP_META_TABLE)
    try:
        return _key_of(await table.get_entity(KEY_PARTITION, KEY_ROW))
    except ResourceNotFoundError:
        pass
    key = secrets.token_bytes(KEY_BYTES)
    try:
        await table.create_entity({"PartitionKey": KEY_PARTITION, "RowKey": KEY_ROW, "key": key})
    except ResourceExistsError:  # another instance won the race: use its key
        return _key_of(await table.get_entity(KEY_PARTITION, KEY_ROW))
    return key


def _key_of(entity: Mapping[str, Any]) -> bytes:
    key = entity.get("key")
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise RuntimeError(f"table {APP_META_TABLE} row {KEY_PARTITION}/{KEY_ROW} holds no {KEY_BYTES}-byte key")
    return key
