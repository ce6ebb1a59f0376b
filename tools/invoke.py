"""Calling the app's functions as the Python worker does: the user function that
``app.get_functions()`` indexed, with trigger objects built by azure-functions itself.
Shared by the tests, the demo and the benchmark."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

import azure.functions as func
import orjson

from function_app import app

T = TypeVar("T")

FUNCTIONS = {f.get_function_name(): f for f in app.get_functions()}

# Called with (function name, response) on every response an HTTP function returns
# through :func:`user_function`; the tests install one that checks the response
# against the OpenAPI document.
RESPONSE_CHECKS: list[Callable[[str, func.HttpResponse], None]] = []


def user_function(name: str) -> Any:
    """The function as the worker calls it; an HTTP function's responses also go
    through :data:`RESPONSE_CHECKS` (read at each call)."""
    function = FUNCTIONS[name]
    user = function.get_user_function()
    trigger = function.get_trigger()
    if trigger is None or trigger.get_binding_name() != "httpTrigger":
        return user

    def checked(response: func.HttpResponse) -> func.HttpResponse:
        for check in RESPONSE_CHECKS:
            check(name, response)
        return response

    if inspect.iscoroutinefunction(user):
        @functools.wraps(user)
        async def call_async(*args: Any, **kwargs: Any) -> func.HttpResponse:
            return checked(await user(*args, **kwargs))

        return call_async

    @functools.wraps(user)
    def call(*args: Any, **kwargs: Any) -> func.HttpResponse:
        return checked(user(*args, **kwargs))

    return call


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


def run_against_azurite(main: Callable[[], Awaitable[T]], settings: dict[str, str] | None = None) -> T:
    """Run ``main`` on a new event loop with the app pointed at a fresh in-memory
    Azurite (plus ``settings``); the app's clients are closed before Azurite stops."""
    from shared.platform.settings import reset_settings
    from shared.platform.storage import reset_data_store
    from tools.services import run_azurite

    async def run() -> T:
        try:
            return await main()
        finally:
            await reset_data_store()

    with run_azurite() as azurite:
        os.environ.update({"DataStorage": azurite.connection_string, **(settings or {})})
        reset_settings()
        return asyncio.run(run())
