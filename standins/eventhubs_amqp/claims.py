"""Claims-based security: the emulator-style connection string the clients are given,
the shared access signature a token must carry, and which audiences let a client read."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote_plus, urlsplit


def connection_string(port: int, *, key_name: str = "simulator", key: str = "c2ltdWxhdG9yLWtleQ==") -> str:
    """The emulator-style connection string of a stand-in on ``port``."""
    return (f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName={key_name};SharedAccessKey={key};"
            "UseDevelopmentEmulator=true")


def covers(audience: str, hub: str, group: str) -> bool:
    """Whether a token for ``audience`` lets a client read ``hub``'s consumer group
    ``group`` (the namespace's, the hub's or the consumer group's own)."""
    path = urlsplit(audience).path.lower().rstrip("/")
    return path in ("", f"/{hub.lower()}", f"/{hub.lower()}/consumergroups/{group.lower()}")


def sas_signature(audience: str, expiry: str, key: str) -> str:
    """The shared access signature of ``audience`` until ``expiry`` with ``key``."""
    digest = hmac.new(key.encode(), f"{quote_plus(audience)}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
