"""Test helpers over :mod:`tools.invoke`: delivering life cycle events and making
storage unreachable for a block."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

from shared.platform.settings import reset_settings
from shared.platform.storage import reset_data_store
from tools import event_factory
from tools.invoke import http_request, json_of, user_function

__all__ = ["changed_settings", "deliver", "http_request", "json_of", "unreachable_storage", "user_function"]


def deliver(run: Any, *documents: dict[str, Any]) -> None:
    """Invoke ``client_lifecycle`` once per event document, in order."""
    handler = user_function("client_lifecycle")
    for document in documents:
        run(handler(event_factory.to_function_event(document)))


@contextlib.contextmanager
def unreachable_storage(run: Any) -> Iterator[None]:
    """``DataStorage`` pointed at a port where nothing listens, for the block."""
    saved = os.environ["DataStorage"]
    run(reset_data_store())
    os.environ["DataStorage"] = re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:9", saved)
    reset_settings()
    try:
        yield
    finally:
        run(reset_data_store())
        os.environ["DataStorage"] = saved
        reset_settings()


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
