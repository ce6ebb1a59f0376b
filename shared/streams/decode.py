"""One Event Hub event body in, validated messages or one rejection out.

``decode`` peels the transport envelope (:mod:`shared.streams.envelopes`), then
validates each message with its stream's model (:mod:`shared.streams.messages`),
settles the device id and time, and builds the archive line but its origin. It is
pure (the time of receipt is passed in) and never raises for bad input: every
problem ends as a :class:`Rejected` with a short reason, pydantic-shaped field
errors (without the input) and the original bytes, ready for a dead letter.

A body that cannot be read (not JSON, too large, no known envelope) is one
rejection holding the exact bytes that arrived. In a JSON array each message
stands alone: the good ones are accepted, and each bad one is a rejection naming
its position and holding that element (serialised again, since the array's bytes
cannot be cut apart), so a dataflow batch with one bad message loses none.

Numbers: orjson reads an integer beyond 64 bits as the nearest double. The models,
latest state and the rules work on that double; the archive line (and a bad
element's dead letter) take the message from a second, lossless parse of the body.
Only a message that holds such a number pays for it, about 20 us instead of 9.4
(the narrow models find it at no cost to the others, see :func:`_accept`).

Device id: the topic's (authenticated by the broker), else the message's
``deviceId``. A message whose ``deviceId`` differs from its topic's device is
rejected as spoofed; a plain message without ``deviceId`` is rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from shared.platform.errors import InvalidInput
from shared.platform.keys import validate_device_id
from shared.platform.timestamps import format_timestamp
from shared.streams.envelopes import RawMessage, Stream, describe, dump_json, unwrap_body
from shared.streams.limits import DEFAULT_LIMITS, StreamLimits
from shared.streams.messages import WIDE, InferenceMessage, TelemetryMessage, bounded_models

# Field errors kept in a rejection: enough to fix the message, not 20 000 of them.
MAX_ERRORS = 20
_MAX_LOC_PART = 100


@dataclass(slots=True)  # not frozen: building a frozen dataclass costs 4x as much, per message
class Accepted:
    """A valid message: the model, its device, and its archive line."""

    message: TelemetryMessage | InferenceMessage
    device_id: str
    # The archive line but its origin (``shared.streams.lines`` adds ``eventHub``):
    # ``deviceId`` and ``timestamp`` as settled here (the device's text when it is UTC
    # with a "Z", else normalised to UTC), and the ``message`` as sent, untouched, so
    # that no field of the device is ever renamed, replaced or shadowed by ours.
    archive: dict[str, Any]
    # Position in an array body; None when the body is the message.
    position: int | None
    topic: str | None


@dataclass(slots=True)
class Rejected:
    """A body, or one message of an array body, that can never be processed, with why."""

    reason: str
    errors: list[dict[str, Any]]
    body: bytes
    # Position in an array body; None when the whole body is rejected.
    position: int | None = None


def decode(stream: Stream, body: bytes, limits: StreamLimits = DEFAULT_LIMITS, *,
           now: datetime) -> list[Accepted | Rejected]:
    """The messages of one event body: accepted or rejected each (a body that cannot
    be read at all is one rejection).

    ``now`` (aware) is the time of receipt: timestamps more than
    ``limits.max_future_skew`` seconds after it are refused."""
    cached = _last if _last is not None and _last[0] is limits else _prepare(limits)
    validators = cached[1] if stream == "telemetry" else cached[2]
    latest = now + cached[3]
    try:
        results: list[Accepted | Rejected] = []
        exact: list[RawMessage] | None = None  # the same messages with every number as written, once needed
        for index, raw in enumerate(unwrap_body(body, stream, limits)):
            try:
                if raw.error is not None:
                    raise raw.error
                result, wide = _accept(raw, validators, stream, limits, latest)
                if wide:  # a number orjson read as a double: the archive takes the message as written
                    exact = exact or unwrap_body(body, stream, limits, exact=True)
                    result.archive["message"] = exact[index].payload
                results.append(result)
            except InvalidInput as exc:
                if raw.position is None:
                    raise
                exact = exact or unwrap_body(body, stream, limits, exact=True)
                errors = [{**error, "loc": [raw.position, *error["loc"]]} for error in exc.errors[:MAX_ERRORS]]
                results.append(Rejected(f"message {raw.position}: {exc.reason}", errors,
                                        dump_json(exact[index].item), raw.position))
        return results
    except InvalidInput as exc:
        return [Rejected(exc.reason, exc.errors[:MAX_ERRORS], body)]


_Validate = Callable[[Any], Any]
# A stream's narrow and full validators (shared.streams.messages.WIDE).
_Validators = tuple[_Validate, _Validate]
_Prepared = tuple[StreamLimits, _Validators, _Validators, timedelta]
_last: _Prepared | None = None


def _prepare(limits: StreamLimits) -> _Prepared:
    """The validators and skew of ``limits``. The last limits are remembered by
    identity: hashing the dataclass on every message would cost more than a lookup."""
    global _last  # a one-entry cache in front of bounded_models' cache
    narrow, full = bounded_models(limits, narrow=True), bounded_models(limits)
    _last = (limits, (narrow.telemetry.__pydantic_validator__.validate_python,
                      full.telemetry.__pydantic_validator__.validate_python),
             (narrow.inference.__pydantic_validator__.validate_python,
              full.inference.__pydantic_validator__.validate_python), timedelta(seconds=limits.max_future_skew))
    return _last


def _accept(raw: RawMessage, validators: _Validators, stream: Stream, limits: StreamLimits,
            latest: datetime) -> tuple[Accepted, bool]:
    """The message accepted, and whether it holds a number that orjson read as a double
    (an integer beyond 64 bits), which the archive must take from a lossless parse:
    one the narrow validator refuses and the full one takes, or one in an unknown field."""
    payload = raw.payload
    if type(payload) is not dict:
        raise InvalidInput(f"{stream} message is {describe(payload)}, expected a JSON object")
    if "ts" in payload and "timestamp" in payload and stream == "telemetry":
        raise InvalidInput("telemetry message has both timestamp and ts; send one of them",
                           [_error(("ts",), "give timestamp or its alias ts, not both", "ambiguous_timestamp")])
    message: TelemetryMessage | InferenceMessage
    try:
        message, wide = validators[0](payload), False
    except ValidationError:
        try:  # a number beyond +-2**63, or an invalid message
            message, wide = validators[1](payload), True
        except ValidationError as exc:
            errors = [_clean(error) for error in exc.errors(include_url=False, include_context=False,
                                                            include_input=False)]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise InvalidInput(f"invalid {stream} message: {_where(errors[0]['loc'])}: {errors[0]['msg']}{more}",
                               errors) from None
    device_id = raw.device_id
    if device_id is None or (message.device_id is not None and message.device_id != device_id):
        device_id = _device_id(raw, message.device_id)
    if message.timestamp > latest:
        raise InvalidInput(
            f"timestamp {format_timestamp(message.timestamp)} lies further in the future than the allowed clock "
            "skew; the device's clock is wrong",
            [_error(("timestamp",), "lies too far in the future", "timestamp_in_future")])
    if message.__pydantic_extra__:
        wide |= _check_extras((), message.__pydantic_extra__, limits)
    if isinstance(message, InferenceMessage):
        wide |= _check_extras(("model",), message.model.__pydantic_extra__, limits)
        for index, detection in enumerate(message.detections):
            wide |= _check_extras(("detections", index), detection.__pydantic_extra__, limits)
    text = payload["ts"] if stream == "telemetry" and "ts" in payload else payload["timestamp"]
    # The device's own text when it is already UTC with a "Z" (most are), else normalised.
    stamp = text if text[-1] == "Z" and text[10] == "T" else format_timestamp(message.timestamp)
    return Accepted(message, device_id, {"deviceId": device_id, "timestamp": stamp, "message": payload},
                    raw.position, raw.topic), wide


def _device_id(raw: RawMessage, claimed: str | None) -> str:
    if raw.device_id is not None:
        if claimed is not None and claimed != raw.device_id:
            raise InvalidInput(
                f"deviceId {claimed!r} differs from the device {raw.device_id!r} that published on the topic; "
                "rejected as spoofed", [_error(("deviceId",), "differs from the topic's device", "spoofed")])
        return raw.device_id
    if claimed is None:
        raise InvalidInput("deviceId is required when the message does not come with its MQTT topic",
                           [_error(("deviceId",), "Field required", "missing")])
    return validate_device_id(claimed)


def _check_extras(loc: tuple[str | int, ...], extra: dict[str, Any] | None, limits: StreamLimits) -> bool:
    """Unknown fields at ``loc`` within the name, string and nesting bounds; whether
    they hold a number beyond 64 bits (see :func:`_accept`)."""
    wide = False
    for name, value in (extra or {}).items():
        wide |= _check_extra(value, (*loc, name), limits, limits.max_extra_depth, field=(*loc, name))
    return wide


def _check_extra(value: Any, loc: tuple[str | int, ...], limits: StreamLimits, depth_left: int, *,
                 field: tuple[str | int, ...]) -> bool:
    """The unknown ``field``'s value within the nesting, key and string bounds; whether
    it holds a number beyond 64 bits."""
    name = loc[-1]
    if isinstance(name, str) and len(name) > limits.max_key_length:
        raise InvalidInput(f"field name at {_where(loc[:-1]) or 'the top'} is longer than "
                           f"{limits.max_key_length} characters",
                           [_error(loc, "field name too long", "string_too_long")])
    if isinstance(value, str):
        if len(value) > limits.max_string_length:
            raise InvalidInput(f"{_where(loc)} is longer than {limits.max_string_length} characters",
                               [_error(loc, "string too long", "string_too_long")])
        return False
    if not isinstance(value, dict | list):
        return type(value) is float and not -WIDE < value < WIDE
    if depth_left == 0:
        raise InvalidInput(f"{_where(field)} nests more than {limits.max_extra_depth} levels deep",
                           [_error(loc, "nested too deeply", "too_deep")])
    items = value.items() if isinstance(value, dict) else enumerate(value)
    wide = False
    for key, item in items:
        wide |= _check_extra(item, (*loc, key), limits, depth_left - 1, field=field)
    return wide


def _error(loc: tuple[str | int, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"type": kind, "loc": [_short(part) for part in loc], "msg": msg}


def _clean(error: Any) -> dict[str, Any]:
    """A pydantic error as JSON: list loc, long keys cut, no 'Value error, ' noise."""
    msg = str(error["msg"]).removeprefix("Value error, ")
    return {"type": error["type"], "loc": [_short(part) for part in error["loc"]], "msg": msg}


def _short(part: str | int) -> str | int:
    return part if isinstance(part, int) or len(part) <= _MAX_LOC_PART else part[:_MAX_LOC_PART] + "..."


def _where(loc: Any) -> str:
    """``detections[0].confidence``, cut short when deep."""
    text = ""
    for part in loc:
        if part == "[key]":  # pydantic's mark for a dict key's own error
            text += " (the name)"
        else:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text if len(text) <= 2 * _MAX_LOC_PART else text[:2 * _MAX_LOC_PART] + "..."
