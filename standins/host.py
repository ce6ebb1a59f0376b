"""The Functions host's side of the worker protocol, in process: what ``func start``
and Azure do with this app, done through Microsoft's worker runtime
(``azure-functions-runtime``, the package the app pins for Python 3.13).

The host starts the worker with a ``WorkerInitRequest`` (the runtime indexes
``function_app.py`` then: it imports the app, checks every function's parameters and
bindings with ``Registry.add_indexed_function`` and refuses the whole app when one
function fails), asks for the functions' metadata, sends a ``FunctionLoadRequest``
per function, then an ``InvocationRequest`` per call: the trigger's data and metadata
as ``TypedData``, the retry context, the trace context. The runtime converts them to
the trigger objects with azure-functions' converters, calls the function and converts
its return value back. Only the transport is left out: the runtime's request
handlers are called directly instead of over gRPC, with each request wrapped as the
proxy worker wraps it (``request.request`` the message, ``request.properties`` the
``host`` and ``protos``).
"""

from __future__ import annotations

import itertools
import json
import sys
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from standins import rpc

APP_DIRECTORY = Path(__file__).resolve().parent.parent
# Capabilities the host announces (FunctionDataCache off: no shared memory here).
HOST_CAPABILITIES = {"FunctionDataCache": "false"}
# The worker's own logger (its per-invocation "Function name: ..." records go to the
# host's system log, not the app's).
WORKER_LOGGER = "azure.functions"


class WorkerRefused(RuntimeError):
    """The worker answered a host request with a failure (for an init: the app does not
    load, so no function runs)."""


class FunctionFailed(Exception):
    """The function raised: what the host learns of it is the worker's ``RpcException``
    (``"TypeName: message"`` and the stack trace), never the exception object."""

    def __init__(self, function: str, exception: Any) -> None:
        super().__init__(f"{function}: {exception.message}")
        self.function = function
        self.message: str = exception.message
        self.stack_trace: str = exception.stack_trace


@dataclass(frozen=True, slots=True)
class Request:
    """A host message as the proxy worker hands it to the runtime."""

    request: Any
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Function:
    """One indexed function as the host learns it from the metadata response."""

    name: str
    function_id: str
    bindings: Mapping[str, Any]  # name -> BindingInfo
    raw_bindings: tuple[dict[str, Any], ...]
    retry: Any  # RpcRetryOptions, unset when the function declares no policy

    @property
    def trigger(self) -> dict[str, Any]:
        return next(b for b in self.raw_bindings if b["type"].endswith("Trigger"))


def _finish(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a request handler that completes without waiting on anything (init, metadata,
    load), whether or not an event loop runs in this thread."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the worker suspended during a request that never waits")


class Host:
    """The host of one app directory: starts the worker once, then invokes functions."""

    def __init__(self, app_directory: Path = APP_DIRECTORY) -> None:
        if sys.version_info[:2] < (3, 13):
            raise RuntimeError("azure-functions-runtime runs on Python 3.13 or newer "
                               "(docs/running.md, 'Python version and the worker')")
        import azure_functions_runtime

        self.runtime = azure_functions_runtime
        self.app_directory = app_directory
        self._ids = itertools.count()
        self.functions = self._start()

    def _request(self, **content: Any) -> Request:
        message = rpc.StreamingMessage(request_id=str(next(self._ids)), **content)
        return Request(message, {"host": "127.0.0.1", "protos": rpc})

    def _start(self) -> dict[str, Function]:
        if str(self.app_directory) not in sys.path:
            sys.path.insert(0, str(self.app_directory))  # the worker's cwd is the app's folder
        self.runtime.start_threadpool_executor()
        init = _finish(self.runtime.worker_init_request(self._request(worker_init_request=rpc.WorkerInitRequest(
            host_version="4.1044.0", capabilities=HOST_CAPABILITIES, worker_directory=str(self.app_directory),
            function_app_directory=str(self.app_directory)))))
        _require(init.result, "WorkerInitRequest")
        metadata = _finish(self.runtime.functions_metadata_request(self._request(
            functions_metadata_request=rpc.FunctionsMetadataRequest(
                function_app_directory=str(self.app_directory)))))
        _require(metadata.result, "FunctionsMetadataRequest")
        if metadata.use_default_metadata_indexing:
            raise WorkerRefused("the worker asked for host indexing: it found no function app")
        functions: dict[str, Function] = {}
        for meta in metadata.function_metadata_results:
            loaded = _finish(self.runtime.function_load_request(self._request(
                function_load_request=rpc.FunctionLoadRequest(function_id=meta.function_id, metadata=meta))))
            _require(loaded.result, f"FunctionLoadRequest({meta.name})")
            functions[meta.name] = Function(meta.name, meta.function_id, meta.bindings,
                                            tuple(json.loads(b) for b in meta.raw_bindings), meta.retry_options)
        return functions

    async def invoke(self, name: str, data: Any, metadata: Mapping[str, Any] | None = None, *,
                     retry_count: int = 0, max_retry_count: int = 0) -> Any:
        """Invoke ``name`` with its trigger's ``data`` (``TypedData``) and ``metadata``;
        returns the function's ``return_value`` (``TypedData``, unset when none) or raises
        :class:`FunctionFailed`."""
        function = self.functions[name]
        request = rpc.InvocationRequest(
            invocation_id=str(uuid.uuid4()), function_id=function.function_id,
            input_data=[rpc.ParameterBinding(name=function.trigger["name"], data=data)],
            trigger_metadata={**(metadata or {}), "sys": _sys(name)},
            trace_context=rpc.RpcTraceContext(trace_parent=f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"),
            retry_context=rpc.RetryContext(retry_count=retry_count, max_retry_count=max_retry_count))
        response = await self.runtime.invocation_request(self._request(invocation_request=request))
        if response.result.status != rpc.StatusResult.Success:
            raise FunctionFailed(name, response.result.exception)
        return response.return_value


def _sys(name: str) -> Any:
    """The WebJobs SDK's ``sys`` binding data, which the host adds to every trigger's."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return rpc.TypedData(json=json.dumps({"MethodName": name, "UtcNow": now, "RandGuid": str(uuid.uuid4())}))


def _require(result: Any, what: str) -> None:
    if result.status != rpc.StatusResult.Success:
        raise WorkerRefused(f"{what} failed in the worker: {result.exception.message}")


def converted(binding: str, data: Any, metadata: Mapping[str, Any] | None = None) -> Any:
    """What the worker hands a function for ``data`` and ``metadata`` sent to a trigger
    of type ``binding`` (the runtime's own ``from_incoming_proto``), without calling
    one: for tests that look at the trigger objects themselves."""
    from azure_functions_runtime.bindings import meta

    meta.load_binding_registry()
    return meta.from_incoming_proto(binding, rpc.ParameterBinding(name="trigger", data=data), pytype=None,
                                    trigger_metadata=dict(metadata or {}), function_name="")


@cache
def host() -> Host:
    """This process's host of the app (the runtime keeps its registry in module state,
    so there is one per process, as one worker process serves one host)."""
    return Host()
