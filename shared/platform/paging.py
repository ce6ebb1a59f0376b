"""Opaque continuation tokens: the Table service's next keys, base64url JSON."""

from __future__ import annotations

import base64
import binascii

import orjson

from shared.platform.errors import InvalidInput


def encode_token(token: dict[str, str] | None) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(orjson.dumps(token)).decode("ascii").rstrip("=")


def decode_token(text: str | None) -> dict[str, str] | None:
    """The SDK's token from the client's string; InvalidInput if it was not ours."""
    if not text:
        return None
    try:
        token = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidInput("continuationToken is not a token this API issued") from None
    if not isinstance(token, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in token.items()):
        raise InvalidInput("continuationToken is not a token this API issued")
    if set(token) - {"PartitionKey", "RowKey"}:
        raise InvalidInput("continuationToken is not a token this API issued")
    return token
