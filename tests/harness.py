"""Calling the app's functions as the Python worker does: the user function that
``app.get_functions()`` indexed, with objects built by the library itself."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import azure.functions as func
import orjson

from function_app import app
from shared.config import reset_settings
from shared.storage import reset_data_store
from tools import event_factory

FUNCTIONS = {f.get_function_name(): f for f in app.get_functions()}


def user_function(name: str) -> Any:
    return FUNCTIONS[name].get_user_function()


def http_request(method: str, path: str, *, route_params: dict[str, str] | None = None,
                 params: dict[str, str] | None = None, body: Any = None,
                 headers: dict[str, str] | None = None) -> func.HttpRequest:
    raw = body if isinstance(body, bytes) else (b"" if body is None else orjson.dumps(body))
    query = f"?{urlencode(params)}" if params else ""
    return func.HttpRequest(method=method, url=f"http://localhost/api/{path}{query}",
                            headers=headers or {}, params=params or {}, route_params=route_params or {},
                            body=raw)


def json_of(response: func.HttpResponse) -> Any:
    return orjson.loads(response.get_body())


def deliver(run: Any, *documents: dict[str, Any]) -> None:
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
