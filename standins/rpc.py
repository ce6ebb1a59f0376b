"""The messages of the Functions host's language worker protocol that
``azure-functions-runtime`` reads and builds, written from the protocol's
documentation (``FunctionRpc.proto`` of azure-functions-language-worker-protobuf),
for the host stand-in in :mod:`standins.host`.

The runtime takes its message classes from the host side at init (the ``protos``
property of each request), so it builds its answers with these. They behave as
protobuf messages do where the runtime can tell: keyword construction that refuses a
field the message does not have or a value of the wrong type, ``None`` for "not set",
unset fields read as their defaults (an unset message field as an empty message),
``WhichOneof``, and the nested enum values (``BindingInfo.out``). A message that the
protocol would refuse is a ``TypeError`` or ``ValueError`` here too, so the runtime
cannot answer us with something the host would not take.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast

# A field's kind: a scalar name, a message class name, or "repeated X" / "map X".
_SCALARS: dict[str, tuple[type, ...]] = {
    "string": (str,), "bytes": (bytes,), "bool": (bool,), "int": (int,), "double": (int, float),
    "enum": (int,), "duration": (timedelta,), "timestamp": (datetime,),
}
_DEFAULTS: dict[str, Any] = {"string": "", "bytes": b"", "bool": False, "int": 0, "double": 0.0, "enum": 0}


class Message:
    """A protocol message: ``FIELDS`` maps each field to its kind, ``ONEOFS`` each oneof
    group to its members."""

    FIELDS: ClassVar[dict[str, str]] = {}
    ONEOFS: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, **values: Any) -> None:
        name = type(self).__name__
        self._set: dict[str, Any] = {}
        for field, value in values.items():
            if field not in self.FIELDS:
                raise ValueError(f'Protocol message {name} has no "{field}" field.')
            if value is None:
                continue  # protobuf: None leaves the field unset
            self._set[field] = _checked(f"{name}.{field}", self.FIELDS[field], value)
        for group, members in self.ONEOFS.items():
            chosen = [m for m in members if m in self._set]
            if len(chosen) > 1:
                raise ValueError(f"{name}: oneof {group} holds one of {members}, not {chosen}")

    def __getattr__(self, field: str) -> Any:
        kinds = type(self).FIELDS
        if field.startswith("_") or field not in kinds:
            raise AttributeError(f"{type(self).__name__} has no field {field!r}")
        if field in self._set:
            return self._set[field]
        kind = kinds[field]
        if kind.startswith("repeated "):
            return []
        if kind.startswith("map "):
            return {}
        if kind in _DEFAULTS:
            return _DEFAULTS[kind]
        if kind in ("duration", "timestamp"):
            return None
        return MESSAGES[kind]()

    def WhichOneof(self, group: str) -> str | None:  # noqa: N802 (protobuf's name)
        if group not in self.ONEOFS:
            raise ValueError(f'Protocol message has no "{group}" field.')
        return next((m for m in self.ONEOFS[group] if m in self._set), None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and type(other) is type(self) and other._set == self._set

    __hash__ = None  # type: ignore[assignment]  # mutable, as protobuf's

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._set.items())})"


def _checked(where: str, kind: str, value: Any) -> Any:
    if kind.startswith("repeated "):
        if isinstance(value, str | bytes | Mapping) or not hasattr(value, "__iter__"):
            raise TypeError(f"{where}: a repeated field takes an iterable, not {type(value).__name__}")
        return [_checked(f"{where}[]", kind.removeprefix("repeated "), v) for v in value]
    if kind.startswith("map "):
        if not isinstance(value, Mapping):
            raise TypeError(f"{where}: a map field takes a mapping, not {type(value).__name__}")
        item = kind.removeprefix("map ")
        return {_checked(f"{where} key", "string", k): _checked(f"{where}[{k!r}]", item, v) for k, v in value.items()}
    if kind in _SCALARS:
        allowed = _SCALARS[kind]
        # bool is an int in Python; protobuf refuses it for number fields.
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise TypeError(f"{where}: {value!r} has type {type(value).__name__}, but expected one of: "
                            f"{', '.join(t.__name__ for t in allowed)}")
        if kind == "int" and not -(2 ** 63) <= cast(int, value) < 2 ** 64:
            raise ValueError(f"{where}: value out of range: {value}")
        return value
    if not isinstance(value, MESSAGES[kind]):
        raise TypeError(f"{where}: expected {kind}, got {type(value).__name__}")
    return value


def _message(name: str, fields: dict[str, str], oneofs: dict[str, tuple[str, ...]] | None = None,
             **constants: Any) -> Any:
    cls = type(name, (Message,), {"FIELDS": fields, "ONEOFS": oneofs or {}, **constants})
    MESSAGES[name] = cls
    return cls


MESSAGES: dict[str, type[Message]] = {}

_TYPED_DATA = ("string", "json", "bytes", "stream", "http", "int", "double", "collection_bytes", "collection_string",
               "collection_double", "collection_sint64", "model_binding_data", "collection_model_binding_data")

NullableString = _message("NullableString", {"value": "string"}, {"string": ("value",)})
NullableDouble = _message("NullableDouble", {"value": "double"}, {"double": ("value",)})
NullableBool = _message("NullableBool", {"value": "bool"}, {"bool": ("value",)})
NullableTimestamp = _message("NullableTimestamp", {"value": "timestamp"}, {"timestamp": ("value",)})


class _SameSite:
    # RpcHttpCookie.SameSite; "None" is a value name there, so it is reached with getattr.
    Lax, Strict, ExplicitNone = 1, 2, 3


setattr(_SameSite, "None", 0)

RpcHttpCookie = _message("RpcHttpCookie", {
    "name": "string", "value": "string", "domain": "NullableString", "path": "NullableString",
    "expires": "NullableTimestamp", "secure": "NullableBool", "http_only": "NullableBool", "same_site": "enum",
    "max_age": "NullableDouble"}, SameSite=_SameSite)
CollectionBytes = _message("CollectionBytes", {"bytes": "repeated bytes"})
CollectionString = _message("CollectionString", {"string": "repeated string"})
CollectionDouble = _message("CollectionDouble", {"double": "repeated double"})
CollectionSInt64 = _message("CollectionSInt64", {"sint64": "repeated int"})
ModelBindingData = _message("ModelBindingData", {"version": "string", "source": "string", "content_type": "string",
                                                 "content": "bytes"})
CollectionModelBindingData = _message("CollectionModelBindingData", {"model_binding_data": "repeated ModelBindingData"})
TypedData = _message("TypedData", {
    "string": "string", "json": "string", "bytes": "bytes", "stream": "bytes", "http": "RpcHttp", "int": "int",
    "double": "double", "collection_bytes": "CollectionBytes", "collection_string": "CollectionString",
    "collection_double": "CollectionDouble", "collection_sint64": "CollectionSInt64",
    "model_binding_data": "ModelBindingData", "collection_model_binding_data": "CollectionModelBindingData",
}, {"data": _TYPED_DATA})
RpcHttp = _message("RpcHttp", {
    "method": "string", "url": "string", "headers": "map string", "body": "TypedData", "params": "map string",
    "status_code": "string", "query": "map string", "enable_content_negotiation": "bool", "rawBody": "TypedData",
    "cookies": "repeated RpcHttpCookie"})
RpcSharedMemory = _message("RpcSharedMemory", {"name": "string", "offset": "int", "count": "int", "type": "enum"})
ParameterBinding = _message("ParameterBinding", {"name": "string", "data": "TypedData",
                                                 "rpc_shared_memory": "RpcSharedMemory"},
                            {"rpc_data": ("data", "rpc_shared_memory")})
RpcException = _message("RpcException", {"source": "string", "stack_trace": "string", "message": "string",
                                         "is_user_exception": "bool", "type": "string"})
StatusResult = _message("StatusResult", {"status": "enum", "result": "string", "exception": "RpcException"},
                        Failure=0, Success=1, Cancelled=2)
RpcTraceContext = _message("RpcTraceContext", {"trace_parent": "string", "trace_state": "string",
                                               "attributes": "map string"})
RetryContext = _message("RetryContext", {"retry_count": "int", "max_retry_count": "int", "exception": "RpcException"})
# BindingInfo's Direction (in 0, out 1, inout 2) and DataType (undefined 0, string 1,
# binary 2, stream 3) are nested enums: protobuf puts their values on the class.
BindingInfo = _message("BindingInfo", {"type": "string", "direction": "enum", "data_type": "enum",
                                       "properties": "map string"}, None,
                       out=1, inout=2, undefined=0, string=1, binary=2, stream=3, **{"in": 0})
RpcRetryOptions = _message("RpcRetryOptions", {"max_retry_count": "int", "delay_interval": "duration",
                                               "minimum_interval": "duration", "maximum_interval": "duration",
                                               "retry_strategy": "string"})
RpcFunctionMetadata = _message("RpcFunctionMetadata", {
    "name": "string", "directory": "string", "script_file": "string", "entry_point": "string",
    "bindings": "map BindingInfo", "is_proxy": "bool", "status": "StatusResult", "language": "string",
    "raw_bindings": "repeated string", "function_id": "string", "managed_dependency_enabled": "bool",
    "retry_options": "RpcRetryOptions", "properties": "map string"})
WorkerMetadata = _message("WorkerMetadata", {"runtime_name": "string", "runtime_version": "string",
                                             "worker_version": "string", "worker_bitness": "string",
                                             "custom_properties": "map string"})
WorkerInitRequest = _message("WorkerInitRequest", {"host_version": "string", "capabilities": "map string",
                                                   "log_categories": "map enum", "worker_directory": "string",
                                                   "function_app_directory": "string"})
WorkerInitResponse = _message("WorkerInitResponse", {"worker_version": "string", "capabilities": "map string",
                                                     "result": "StatusResult", "worker_metadata": "WorkerMetadata"})
FunctionsMetadataRequest = _message("FunctionsMetadataRequest", {"function_app_directory": "string"})
FunctionMetadataResponse = _message("FunctionMetadataResponse", {
    "function_metadata_results": "repeated RpcFunctionMetadata", "result": "StatusResult",
    "use_default_metadata_indexing": "bool"})
FunctionLoadRequest = _message("FunctionLoadRequest", {"function_id": "string", "metadata": "RpcFunctionMetadata",
                                                       "managed_dependency_enabled": "bool"})
FunctionLoadResponse = _message("FunctionLoadResponse", {"function_id": "string", "result": "StatusResult",
                                                         "is_dependency_downloaded": "bool"})
FunctionEnvironmentReloadResponse = _message("FunctionEnvironmentReloadResponse", {
    "worker_metadata": "WorkerMetadata", "capabilities": "map string", "result": "StatusResult"})
InvocationRequest = _message("InvocationRequest", {
    "invocation_id": "string", "function_id": "string", "input_data": "repeated ParameterBinding",
    "trigger_metadata": "map TypedData", "trace_context": "RpcTraceContext", "retry_context": "RetryContext"})
InvocationResponse = _message("InvocationResponse", {
    "invocation_id": "string", "output_data": "repeated ParameterBinding", "return_value": "TypedData",
    "result": "StatusResult"})
StreamingMessage = _message("StreamingMessage", {
    "request_id": "string", "worker_init_request": "WorkerInitRequest",
    "functions_metadata_request": "FunctionsMetadataRequest", "function_load_request": "FunctionLoadRequest",
    "invocation_request": "InvocationRequest"},
    {"content": ("worker_init_request", "functions_metadata_request", "function_load_request",
                 "invocation_request")})
