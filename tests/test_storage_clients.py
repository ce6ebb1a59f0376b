"""The app's storage clients give up fast and leave the waiting to the host, which
retries a failing invocation by the function's policy (8 times, 5 s doubling to 5
min). With the SDKs' defaults (Blob: 3 retries after 15, 18 and 24 s) one attempt of
a batch took 77 s to fail against unreachable storage, and the documented 15 minutes
of retries became 27."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from shared.platform.storage import DataStore, data_store
from tests.support.harness import changed_settings

pytestmark = pytest.mark.usefixtures("app_env")


@contextlib.contextmanager
def busy_storage(run: Any) -> Iterator[list[float]]:
    """``DataStorage`` pointed at a server that answers every request 503 (storage's
    "server busy", which the clients retry for idempotent requests); yields the times
    of the requests it received."""
    import os

    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[float] = []

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with client, contextlib.suppress(OSError):
                client.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += client.recv(65536)
                seen.append(time.monotonic())
                client.sendall(b"HTTP/1.1 503 Server Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    busy = re.sub(r"http://127\.0\.0\.1:\d+", f"http://127.0.0.1:{listener.getsockname()[1]}",
                  os.environ["DataStorage"])
    try:
        with changed_settings(run, {"DataStorage": busy}):
            yield seen
    finally:
        listener.close()


async def read_a_row(store: DataStore) -> Any:
    return await store.table_service.get_table_client("devices").get_entity("p", "r")


async def read_a_blob(store: DataStore) -> Any:
    return await store.blob_service.get_blob_client("telemetry", "x.jsonl").get_blob_properties()


@pytest.mark.parametrize("request_", [read_a_row, read_a_blob], ids=["table", "blob"])
def test_a_request_to_busy_storage_is_tried_three_times_within_seconds(
        run: Any, request_: Callable[[DataStore], Awaitable[Any]]) -> None:
    from azure.core.exceptions import HttpResponseError

    with busy_storage(run) as seen:
        started = time.monotonic()
        with pytest.raises(HttpResponseError):
            run(request_(data_store()))
    assert len(seen) == 3, "the request and two retries"
    assert seen[-1] - started < 8, "retries after about 2 and 3 s, not after 15, 18 and 24"


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_a_proxy_the_environment_names_is_used_and_none_is_looked_up_otherwise(run: Any, variable: str) -> None:
    """Without a proxy variable the transports do not read the environment on every
    request (a cost per request, docs/capacity.md, Speed); with one they go through it: here a closed port."""
    from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError

    from shared.platform.storage import uses_a_proxy

    async def read() -> Any:
        return await (await data_store().table("devices")).get_entity("none", "none")

    assert not uses_a_proxy()
    with changed_settings(run, {variable: f"http://127.0.0.1:{_closed_port()}"}):
        assert uses_a_proxy()
        with pytest.raises(ServiceRequestError):
            run(read())
    with pytest.raises(ResourceNotFoundError):  # through no proxy: storage answers
        run(read())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
