"""A credential that records the token requests of the Event Grid HTTP publish transport,
and the token and grants it hands out."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken

TOKEN = "token-of-the-app"
ONE_DEVICE_TOKEN = "token-for-another-device-only"
GRANTS = {TOKEN: ["#"], ONE_DEVICE_TOKEN: ["devices/another-device/#"]}


class RecordingCredential:
    """azure-core's AsyncTokenCredential: hands out ``token`` (or raises ``error``) and
    records the scopes asked for."""

    def __init__(self, token: str = TOKEN, error: Exception | None = None) -> None:
        self.token = token
        self.error = error
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **_options: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.error is not None:
            raise self.error
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> RecordingCredential:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None
