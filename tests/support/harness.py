"""Test helpers over :mod:`standins.invoke`: delivering life cycle events and making
storage unreachable for a block; and the local API server's command line."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from azure.core.exceptions import ServiceRequestError

from shared.platform.settings import reset_settings
from shared.platform.storage import CLIENT_OPTIONS, reset_data_store
from standins.invoke import http_request, json_of, user_function
from standins.services import ROOT
from standins.storage_requests import Requests, request_hook

__all__ = ["Requests", "changed_settings", "command_line", "deliver", "failing_requests", "http_request", "json_of",
           "read_until", "storage_requests", "unreachable_storage", "user_function"]


def deliver(run: Any, *documents: dict[str, Any]) -> None:
    """Invoke ``client_lifecycle`` once per event document, in order."""
    handler = user_function("client_lifecycle")
    for document in documents:
        run(handler(document))


@contextlib.contextmanager
def unreachable_storage(run: Any) -> Iterator[None]:
    """``DataStorage`` pointed at a port where nothing listens, for the block."""
    dead = re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:9", os.environ["DataStorage"])
    with changed_settings(run, {"DataStorage": dead}):
        yield


@contextlib.contextmanager
def _hook(run: Any, on_request: Callable[[str, str], None], **options: Any) -> Iterator[None]:
    """Clients built within the block call ``on_request(method, path_and_query)``
    (percent-decoded) before each request (:mod:`standins.storage_requests`)."""
    run(reset_data_store())
    CLIENT_OPTIONS.update(raw_request_hook=request_hook(on_request), **options)
    try:
        yield
    finally:
        CLIENT_OPTIONS.clear()
        run(reset_data_store())


@contextlib.contextmanager
def storage_requests(run: Any) -> Iterator[Requests]:
    """Count the app's real storage requests within the block."""
    requests = Requests()
    with _hook(run, requests.record):
        yield requests


@contextlib.contextmanager
def failing_requests(run: Any, method: str, path_fragment: str, times: int = 1) -> Iterator[list[str]]:
    """The first ``times`` storage requests of ``method`` to a path containing
    ``path_fragment`` fail as a dropped connection would; the rest go through."""
    failed: list[str] = []

    def on_request(seen_method: str, path: str) -> None:
        if seen_method == method and path_fragment in path and len(failed) < times:
            failed.append(path)
            raise ServiceRequestError(f"injected failure of {method} {path}")

    with _hook(run, on_request, retry_total=0):  # the SDK would retry a dropped connection
        yield failed


@contextlib.contextmanager
def changed_settings(run: Any, values: dict[str, str | None]) -> Iterator[None]:
    """The environment with ``values`` set (None: removed) for the block, and the
    app's settings and storage clients forgotten before and after."""
    saved = {name: os.environ.get(name) for name in values}

    def apply(changes: dict[str, str | None]) -> None:
        run(reset_data_store())
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_settings()

    apply(values)
    try:
        yield
    finally:
        apply(saved)


@contextlib.contextmanager
def command_line(*args: str) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    """``python -m tools.serve *args`` in a clean environment, its stdout's lines put in a queue."""
    process = subprocess.Popen([sys.executable, "-m", "tools.serve", *args], cwd=ROOT, text=True,
                               env={"PATH": os.environ["PATH"]}, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in process.stdout or ():
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def read_until(lines: queue.Queue[str], prefix: str, seen: list[str], timeout: float = 60) -> str:
    """The first line starting with ``prefix``; the lines read on the way in ``seen``."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(queue.Empty):
        while time.monotonic() < deadline:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic())).rstrip("\n")
            seen.append(line)
            if line.startswith(prefix):
                return line
    raise AssertionError(f"no line starting with {prefix!r} in {seen}")
