"""Seeing the app's storage requests: a ``raw_request_hook`` in
:data:`shared.platform.storage.CLIENT_OPTIONS`, which the Blob and Table SDKs run in
their pipelines (azure-core's ``CustomHookPolicy``, storage's ``StorageRequestHook``,
both after the retry policy) for every request they send, retries included. Used by
the tests (to count requests and inject faults) and by the benchmark (to count)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.platform.storage import CLIENT_OPTIONS, reset_data_store


@dataclass
class Requests:
    """Storage requests seen: (method, path and query) each."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    def to(self, fragment: str) -> list[tuple[str, str]]:
        return [r for r in self.seen if fragment in r[1]]

    def record(self, method: str, path: str) -> None:
        self.seen.append((method, path))


def request_hook(on_request: Callable[[str, str], None]) -> Callable[[Any], None]:
    """A ``raw_request_hook`` calling ``on_request(method, path_and_query)``
    (percent-decoded) before each request; whatever it raises fails the request."""

    def hook(request: Any) -> None:
        http = request.http_request
        parts = urlsplit(http.url)
        on_request(http.method, unquote(parts.path + (f"?{parts.query}" if parts.query else "")))

    return hook


@contextlib.asynccontextmanager
async def counted_requests() -> AsyncIterator[Requests]:
    """The app's storage requests within the block. The process's clients are built
    afresh before (so they carry the hook) and after (so they do not)."""
    requests = Requests()
    await reset_data_store()
    CLIENT_OPTIONS.update(raw_request_hook=request_hook(requests.record))
    try:
        yield requests
    finally:
        CLIENT_OPTIONS.clear()
        await reset_data_store()
