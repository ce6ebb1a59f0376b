"""Calling the app's functions as the Python worker does: the user function that
``app.get_functions()`` indexed, with trigger objects built by azure-functions itself.
Shared by the tests, the demo and the benchmark."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import azure.functions as func
import orjson
from azure.functions._abc import RetryContext, TraceContext

from function_app import app
from tools.eventhub_factory import Partition

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


class _Retry(RetryContext):
    def __init__(self, retry_count: int, max_retry_count: int) -> None:
        self._count, self._max = retry_count, max_retry_count

    @property
    def retry_count(self) -> int:
        return self._count

    @property
    def max_retry_count(self) -> int:
        return self._max

    @property
    def exception(self) -> Any:
        return None


class _Trace(TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return "00-" + "0" * 32 + "-" + "0" * 16 + "-00"

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class InvocationContext(func.Context):
    """The ``context`` argument as the worker fills it: the function's name and, for
    a function with a retry policy, where this attempt stands in it (the first
    attempt is 0; the last is ``max_retry_count``)."""

    def __init__(self, function_name: str, *, retry_count: int = 0, max_retry_count: int = 0) -> None:
        self._name = function_name
        self._retry = _Retry(retry_count, max_retry_count)

    @property
    def invocation_id(self) -> str:
        return str(uuid.uuid4())

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return threading.local

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return str(Path(__file__).resolve().parent.parent)

    @property
    def trace_context(self) -> TraceContext:
        return _Trace()

    @property
    def retry_context(self) -> RetryContext:
        return self._retry


def retry_policy(name: str) -> dict[str, Any]:
    """The retry policy a function declares (what the host applies to it)."""
    setting = FUNCTIONS[name].get_setting("retry_policy")
    return dict(setting.get_dict_repr()) if setting is not None else {}


HUB_FUNCTIONS = {"telemetry": "telemetry_ingest", "inference": "inference_ingest",
                 "command-responses": "command_responses"}  # the Event Hubs functions by hub


@functools.cache
def max_event_batch_size() -> int:
    """host.json's ``maxEventBatchSize``: the most events the host hands an Event Hubs
    function at once."""
    host = orjson.loads((Path(__file__).resolve().parent.parent / "host.json").read_bytes())
    return int(host["extensions"]["eventHubs"]["maxEventBatchSize"])


async def deliver(log: Partition, sequence: range) -> None:
    """``sequence`` of the partition ``log`` to its hub's function as the host hands it:
    in batches of at most :func:`max_event_batch_size`, each retried by the function's
    retry policy (without its delays), the last failure raised."""
    name = HUB_FUNCTIONS[log.hub]
    retries = int(retry_policy(name).get("max_retry_count", 0))
    for batch in log.batches(max_event_batch_size(), sequence):
        for attempt in range(retries + 1):
            try:
                await user_function(name)(batch, InvocationContext(name, retry_count=attempt,
                                                                   max_retry_count=retries))
                break
            except Exception:
                if attempt == retries:
                    raise
                await asyncio.sleep(0.2)


async def drain_queue(queue_name: str, function_name: str, *, max_messages: int = 1000) -> int:
    """Do what the host's queue trigger does: take each message of ``queue_name``
    (in ``AzureWebJobsStorage``), hand it to ``function_name`` as the worker builds
    it (the library's converter), and delete it once the function succeeded.
    Returns how many messages were handled."""
    from azure.functions.meta import Datum
    from azure.functions.queue import QueueMessageInConverter
    from azure.storage.queue import TextBase64DecodePolicy
    from azure.storage.queue.aio import QueueClient

    handled = 0
    async with QueueClient.from_connection_string(os.environ["AzureWebJobsStorage"], queue_name,
                                                  message_decode_policy=TextBase64DecodePolicy()) as queue:
        while handled < max_messages:
            batch = [m async for m in queue.receive_messages(max_messages=32, visibility_timeout=60)]
            if not batch:
                return handled
            for message in batch:
                decoded = QueueMessageInConverter.decode(Datum(message.content, "string"), trigger_metadata={
                    "Id": Datum(message.id, "string"), "DequeueCount": Datum(message.dequeue_count, "int"),
                    "PopReceipt": Datum(message.pop_receipt, "string")})
                await user_function(function_name)(decoded)
                await queue.delete_message(message)
                handled += 1
    return handled
