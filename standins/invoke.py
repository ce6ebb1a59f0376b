"""Calling the app's functions as the Functions host does: through Microsoft's
Python worker runtime (``azure-functions-runtime``, :mod:`standins.host`), which
indexed the app, converts what the host sends into the trigger objects and the
function's answer back. Shared by the tests, the local API server, the simulator,
the demo and the benchmark.

A function is called with what its trigger's host sends, in the forms the rest of
the tools build: an HTTP request's parts (a ``func.HttpRequest``, taken apart into
the ``RpcHttp`` the host sends), an Event Hubs :class:`~standins.eventhub_factory.Batch`,
an Event Grid event's JSON document, ``None`` for a timer. What comes back is what
the host reads: an HTTP answer rebuilt as ``func.HttpResponse`` from the ``RpcHttp``
the worker returned, or :class:`~standins.host.FunctionFailed` when it raised."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import azure.functions as func
import orjson

from standins import triggers
from standins.eventhub_factory import Batch, Partition
from standins.host import Function, FunctionFailed, host

T = TypeVar("T")

__all__ = ["FUNCTIONS", "RESPONSE_CHECKS", "FunctionFailed", "InvocationContext", "deliver", "drain_queue",
           "http_request", "json_of", "retry_policy", "run_against_azurite", "user_function"]

# The functions as the worker indexed them (name, id, raw bindings, retry options).
FUNCTIONS: Mapping[str, Function] = host().functions

# Called with (function name, response) on every response an HTTP function returns
# through :func:`user_function`; the tests install one that checks the response
# against the OpenAPI document.
RESPONSE_CHECKS: list[Callable[[str, func.HttpResponse], None]] = []


@dataclass(frozen=True, slots=True)
class InvocationContext:
    """The invocation's ``RetryContext`` as the host fills it: where this attempt stands
    in the function's retry policy (the first attempt is 0; the last is
    ``max_retry_count``). The worker builds the ``context`` argument from it."""

    function_name: str
    retry_count: int = 0
    max_retry_count: int = 0


def host_data(name: str, argument: Any) -> tuple[Any, dict[str, Any]]:
    """What the host sends ``name``'s trigger for ``argument``: ``TypedData`` and
    trigger metadata."""
    kind = FUNCTIONS[name].trigger["type"]
    if kind == "httpTrigger" and isinstance(argument, func.HttpRequest):
        return triggers.http_request(method=argument.method, url=argument.url, headers=dict(argument.headers),
                                     query=dict(argument.params), params=dict(argument.route_params),
                                     body=argument.get_body()), {}
    if kind == "eventHubTrigger" and isinstance(argument, Batch):
        return argument.data, dict(argument.metadata)
    if kind == "eventGridTrigger" and isinstance(argument, Mapping):
        return triggers.event_grid(argument), {}
    if kind == "timerTrigger" and argument is None:
        return triggers.timer(), {}
    raise TypeError(f"{name} ({kind}) is not called with a {type(argument).__name__}: give what its host sends "
                    "(module docstring)")


def user_function(name: str) -> Callable[..., Awaitable[Any]]:
    """Function ``name`` as the host calls it, with the trigger's argument (and, for a
    function with a retry policy, an :class:`InvocationContext`); an HTTP function's
    responses also go through :data:`RESPONSE_CHECKS` (read at each call)."""

    async def call(argument: Any, context: InvocationContext | None = None) -> Any:
        data, metadata = host_data(name, argument)
        attempt = context or InvocationContext(name)
        value = await host().invoke(name, data, metadata, retry_count=attempt.retry_count,
                                    max_retry_count=attempt.max_retry_count)
        if FUNCTIONS[name].trigger["type"] != "httpTrigger":
            return None
        response = http_response(triggers.http_result(value))
        for check in RESPONSE_CHECKS:
            check(name, response)
        return response

    return call


def http_response(result: triggers.HttpResult) -> func.HttpResponse:
    """The answer the host read, as a ``func.HttpResponse`` for the callers' checks."""
    headers = dict(result.headers)
    content_type = headers.get("content-type", "")
    mimetype = content_type.split(";")[0].strip() or None
    return func.HttpResponse(body=result.body, status_code=result.status, headers=headers, mimetype=mimetype)


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
    from standins.services import run_azurite

    async def run() -> T:
        try:
            return await main()
        finally:
            await reset_data_store()

    with run_azurite() as azurite:
        os.environ.update({"DataStorage": azurite.connection_string, **(settings or {})})
        reset_settings()
        return asyncio.run(run())


def retry_policy(name: str) -> dict[str, Any]:
    """The retry policy the host applies to ``name``: the worker's ``RpcRetryOptions``
    of it (an empty dict when it declares none)."""
    options = FUNCTIONS[name].retry
    if not options.max_retry_count and not options.retry_strategy:
        return {}
    return {"strategy": options.retry_strategy, "max_retry_count": options.max_retry_count,
            "minimum_interval": options.minimum_interval, "maximum_interval": options.maximum_interval,
            "delay_interval": options.delay_interval}


HUB_FUNCTIONS = {"telemetry": "telemetry_ingest", "inference": "inference_ingest",
                 "command-responses": "command_responses"}  # the Event Hubs functions by hub


@functools.cache
def max_event_batch_size() -> int:
    """host.json's ``maxEventBatchSize``: the most events the host hands an Event Hubs
    function at once."""
    settings = orjson.loads((Path(__file__).resolve().parent.parent / "host.json").read_bytes())
    return int(settings["extensions"]["eventHubs"]["maxEventBatchSize"])


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


async def drain_queue(queue_name: str, function_name: str, *, max_messages: int = 1000,
                      last_first: bool = False) -> int:
    """Do what the host's queue trigger does: take each message of ``queue_name``
    (in ``AzureWebJobsStorage``), send it to ``function_name`` through the worker,
    and delete it once the function succeeded. Returns how many messages were handled.
    ``last_first``: take every message there is, handle the newest first (the host
    promises no order) and make the ones beyond ``max_messages`` visible again."""
    from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
    from azure.storage.queue.aio import QueueClient

    handled = 0
    async with QueueClient.from_connection_string(os.environ["AzureWebJobsStorage"], queue_name,
                                                  message_encode_policy=TextBase64EncodePolicy(),
                                                  message_decode_policy=TextBase64DecodePolicy()) as queue:
        async def handle(message: Any) -> None:
            assert message.inserted_on and message.expires_on and message.next_visible_on  # received: all set
            data, metadata = triggers.queue_message(
                body=message.content, message_id=message.id, dequeue_count=message.dequeue_count or 1,
                pop_receipt=message.pop_receipt or "", inserted=message.inserted_on,
                expires=message.expires_on, next_visible=message.next_visible_on)
            await host().invoke(function_name, data, metadata)
            await queue.delete_message(message)

        if last_first:
            taken: list[Any] = []
            while batch := [m async for m in queue.receive_messages(max_messages=32, visibility_timeout=60)]:
                taken += batch
            for message in reversed(taken[-max_messages:]):
                await handle(message)
            for message in taken[:-max_messages]:
                await queue.update_message(message, visibility_timeout=0)
            return min(len(taken), max_messages)
        while handled < max_messages:
            batch = [m async for m in queue.receive_messages(max_messages=32, visibility_timeout=60)]
            if not batch:
                return handled
            for message in batch:
                await handle(message)
                handled += 1
    return handled
