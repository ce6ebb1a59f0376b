"""Envelopes: the transport layer around stream messages, peeled off before a model
validates the message (as Powertools' parser envelopes do for Lambda events).

An Event Hub event body is one of:

- **a routed CloudEvent** (:class:`RoutedCloudEvent`). What this relies on, from
  the Azure docs "Event schema for MQTT routed messages" and "Enrichments for MQTT
  routed messages" (Event Grid namespaces):

  - the broker wraps every routed MQTT PUBLISH in a CloudEvent 1.0, structured JSON:
    ``specversion`` "1.0", ``id`` and ``time`` stamped by the service, ``type``
    ``"MQTT.EventPublished"``, ``source`` the namespace name, ``subject`` the MQTT
    topic of the PUBLISH;
  - the payload is in ``data_base64`` (base64 of the payload bytes) for MQTT v3.1.1
    messages and MQTT v5 messages with payload format indicator 0; in ``data`` for
    MQTT v5 messages with content type ``application/json; charset=utf-8`` or
    payload format indicator 1: the JSON value itself, or a JSON string when the
    payload is not JSON (so ``data`` may also be a string holding JSON);
  - routing enrichments add up to 20 extension attributes (lower-case
    alphanumeric keys); the infrastructure (``infra/app/eventgrid.bicep``) adds
    ``deviceid`` = ``${client.authenticationName}``, the publishing client's
    authenticated name;
  - a device that publishes a CloudEvent of its own (MQTT CloudEvents binding) has
    it forwarded with *its* attributes, so its ``subject`` is not the topic. Such
    events are not ``MQTT.EventPublished`` (the hubs' subscriptions filter on that
    type) and are refused here.

  The device id is taken from the topic ``devices/{deviceId}/{stream}``: the
  broker's topic spaces let a client publish only under its own authentication
  name, so the topic is authenticated. The topic's last level must name the
  stream the body arrived on, and a ``deviceid`` attribute, when present, must
  agree with the topic.

- **a plain JSON message** (:class:`PlainMessage`), as an Azure IoT Operations
  dataflow sends it; it carries its ``deviceId`` itself.

- **a JSON array** (:class:`MessageArray`) of such messages (plain, or routed
  CloudEvents): a dataflow's batch. Arrays do not nest.

The body itself must be UTF-8 JSON without a byte order mark (RFC 8259 section 8.1
says senders must not add one; rejecting it names the problem instead of guessing),
within the size bound. A new transport format is one new class here, added to
:data:`BODY_ENVELOPES` (and :data:`ITEM_ENVELOPES` if it may appear in an array).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from shared.platform.errors import InvalidInput
from shared.platform.keys import validate_device_id
from shared.streams.limits import StreamLimits

# "response": a device's answer to a command, on devices/{deviceId}/commands/{commandId}/response.
Stream = Literal["telemetry", "inference", "response"]

ROUTED_EVENT_TYPE = "MQTT.EventPublished"
# The routing enrichment that carries ${client.authenticationName} (infra/app/eventgrid.bicep).
DEVICE_ID_ATTRIBUTE = "deviceid"
# ${mqtt.message.topicName}: the topic of the PUBLISH, as the broker received it.
TOPIC_ATTRIBUTE = "mqtttopic"
TOPIC_PREFIX = "devices/"
# Media types a routed payload may be declared as; the payload must be JSON whatever it says.
_JSON_MEDIA_TYPES = frozenset({"application/json", "text/json", "text/plain", "application/octet-stream"})

_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 4x as much to build
class RawMessage:
    """One message out of an envelope, not yet validated."""

    payload: Any
    # Authenticated by the broker (the topic), or None when the transport says nothing.
    device_id: str | None
    topic: str | None
    content_type: str | None
    envelope: str
    # Where the message sits in an array body; None when the body is the message.
    position: int | None = None
    # In an array: the element as it arrived (for its own dead letter), and why it
    # could not be unwrapped, if it could not: one bad element spoils no other.
    item: Any = None
    error: InvalidInput | None = None


class Envelope(Protocol):
    """One transport format."""

    name: str  # as reasons say it: "a routed CloudEvent"

    def accepts(self, document: object) -> bool:
        """Whether ``document`` (a parsed JSON value) is in this format."""
        ...

    def unwrap(self, document: Any, stream: Stream, limits: StreamLimits, exact: bool) -> list[RawMessage]:
        """The messages inside ``document``; InvalidInput with the reason otherwise.
        ``exact``: parse what is inside it as :func:`parse_json` does when exact."""
        ...


def parse_json(data: bytes, *, what: str, exact: bool = False) -> Any:
    """``data`` parsed strictly, InvalidInput saying what is wrong with ``what`` otherwise.

    orjson is strict already: UTF-8 only (invalid bytes and lone surrogate escapes
    are errors), no NaN or Infinity literals, no number beyond a double's range
    (``1e999`` is an error, not infinity), no BOM, nesting up to 1024 levels. So
    every number it returns is finite. The checks below only explain its refusals.

    But orjson reads an integer beyond 64 bits (``2**64 + 1``, a 128-bit serial) as
    the nearest double. ``exact`` reads ``data`` again with the standard library,
    whose integers have no bound, once orjson has found it valid (so none of what
    orjson refuses reaches it): 3.4 times slower, so only for a message that holds
    such a number (``decode`` knows)."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        detail, at = str(exc), exc.pos
    else:
        return json.loads(data) if exact else document
    if not data.strip():
        raise InvalidInput(f"{what} is empty")
    if data.startswith(_BOM):
        raise InvalidInput(f"{what} starts with a UTF-8 byte order mark; send JSON without one")
    if "depth limit" in detail:
        raise InvalidInput(f"{what} nests arrays or objects more than 1024 levels deep")
    if "infinity" in detail:
        raise InvalidInput(f"{what} holds a number beyond the range of a double (like 1e999) at character {at}")
    if data[at:at + 3] == b"NaN" or data[at:at + 8] == b"Infinity":
        raise InvalidInput(f"{what} holds NaN or Infinity at character {at}; JSON numbers must be finite")
    if "surrogate" in detail and "UTF-8" not in detail:
        raise InvalidInput(f"{what} holds a lone UTF-16 surrogate escape (\\ud800-\\udfff) at character {at}, "
                           "which no UTF-8 text can hold")
    if "UTF-8" in detail:
        raise InvalidInput(f"{what} is not valid UTF-8")
    raise InvalidInput(f"{what} is not valid JSON: {detail}")


def dump_json(value: Any) -> bytes:
    """``value`` as compact JSON, by orjson unless it cannot: an integer beyond 64 bits
    (from ``parse_json(exact=True)``) or nesting past orjson's 254 levels (a bad array
    element may nest to 1024) takes the standard library."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def describe(value: object) -> str:
    """A JSON value's kind, for reasons: 'an object', 'null', 'a string'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def device_from_topic(topic: str, stream: Stream) -> str:
    """The device id of a ``devices/{deviceId}/{stream}`` topic (for answers,
    ``devices/{deviceId}/commands/{commandId}/response``)."""
    if stream == "response":
        parts = topic.split("/")
        if len(parts) != 5 or parts[0] != "devices" or parts[2] != "commands" or parts[4] != "response" \
                or not parts[3]:
            raise InvalidInput(f"subject {topic[:200]!r} is not a devices/{{deviceId}}/commands/{{commandId}}/"
                               "response topic")
        try:
            return validate_device_id(parts[1])
        except InvalidInput as exc:
            raise InvalidInput(f"the topic's {exc.reason}") from None
    device_id, slash, last = topic.removeprefix(TOPIC_PREFIX).rpartition("/")
    if not slash or not topic.startswith(TOPIC_PREFIX):
        raise InvalidInput(f"subject {topic[:200]!r} is not a devices/{{deviceId}}/{stream} topic")
    if last != stream:
        raise InvalidInput(f"subject {topic[:200]!r} is not a devices/{{deviceId}}/{stream} topic, but the "
                           f"message arrived on the {stream} stream")
    try:
        return validate_device_id(device_id)
    except InvalidInput as exc:
        raise InvalidInput(f"the topic's {exc.reason}") from None


class RoutedCloudEvent:
    """A CloudEvent routed by the Event Grid MQTT broker (``MQTT.EventPublished``)."""

    name = "a routed CloudEvent"

    def accepts(self, document: object) -> bool:
        return isinstance(document, dict) and "specversion" in document

    def unwrap(self, document: Any, stream: Stream, limits: StreamLimits, exact: bool) -> list[RawMessage]:
        if document.get("specversion") != "1.0":
            raise InvalidInput("CloudEvent specversion must be \"1.0\"")
        event_type = document.get("type")
        if event_type != ROUTED_EVENT_TYPE:
            shown = event_type[:200] if isinstance(event_type, str) else describe(event_type)
            raise InvalidInput(f"CloudEvent type {shown!r} is not {ROUTED_EVENT_TYPE}; only messages routed by the "
                               "MQTT broker are accepted (their subject is the authenticated topic)")
        topic = document.get("subject")
        if not isinstance(topic, str):
            raise InvalidInput(f"CloudEvent subject (the MQTT topic) must be a string, not {describe(topic)}")
        device_id = device_from_topic(topic, stream)
        # The broker's word, not the CloudEvent's: a device that publishes a CloudEvent of
        # its own has its attributes forwarded, subject included, so the subject is
        # trusted only when the broker's enrichments (infra/app/eventgrid.bicep) agree.
        enriched = document.get(DEVICE_ID_ATTRIBUTE)
        if enriched is None:
            raise InvalidInput(f"CloudEvent has no {DEVICE_ID_ATTRIBUTE} attribute, which the broker adds to every "
                               "message it routes; rejected as spoofed")
        if enriched != device_id:
            raise InvalidInput(f"CloudEvent attribute {DEVICE_ID_ATTRIBUTE} does not match the device "
                               f"{device_id!r} of the topic; rejected as spoofed")
        published_on = document.get(TOPIC_ATTRIBUTE, topic)  # added with issue 17: older messages lack it
        if published_on != topic:
            raise InvalidInput(f"CloudEvent subject is not the topic the message was published on "
                               f"({TOPIC_ATTRIBUTE}); rejected as spoofed")
        content_type = document.get("datacontenttype")
        if content_type is not None and not (type(content_type) is str and content_type in _JSON_MEDIA_TYPES):
            if not isinstance(content_type, str):
                raise InvalidInput(f"CloudEvent datacontenttype must be a string, not {describe(content_type)}")
            media_type = content_type.partition(";")[0].strip().lower()
            if media_type not in _JSON_MEDIA_TYPES and not media_type.endswith("+json"):
                raise InvalidInput(f"CloudEvent datacontenttype {content_type[:100]!r} is not JSON, text or "
                                   "octet-stream; the payload must be a JSON message")
        return [RawMessage(self._payload(document, exact), device_id, topic, content_type, self.name)]

    @staticmethod
    def _payload(document: dict[str, Any], exact: bool) -> Any:
        if "data" in document and "data_base64" in document:
            raise InvalidInput("CloudEvent has both data and data_base64; it may carry only one")
        if "data_base64" in document:
            encoded = document["data_base64"]
            if not isinstance(encoded, str):
                raise InvalidInput(f"CloudEvent data_base64 must be a string, not {describe(encoded)}")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput("CloudEvent data_base64 is not valid base64") from None
            return parse_json(raw, what="CloudEvent payload (data_base64)", exact=exact)
        if "data" not in document:
            raise InvalidInput("CloudEvent has no data and no data_base64: no payload")
        data = document["data"]
        if isinstance(data, str):  # a JSON payload the broker serialised as a string
            return parse_json(data.encode("utf-8"), what="CloudEvent data string", exact=exact)
        return data


class PlainMessage:
    """A message as it is, without a transport wrapper (IoT Operations dataflows)."""

    name = "a JSON object"

    def accepts(self, document: object) -> bool:
        return isinstance(document, dict)

    def unwrap(self, document: Any, stream: Stream, limits: StreamLimits, exact: bool) -> list[RawMessage]:
        return [RawMessage(document, None, None, None, self.name)]


class MessageArray:
    """A JSON array of messages, each in one of :data:`ITEM_ENVELOPES`."""

    name = "a JSON array of messages"

    def accepts(self, document: object) -> bool:
        return isinstance(document, list)

    def unwrap(self, document: Any, stream: Stream, limits: StreamLimits, exact: bool) -> list[RawMessage]:
        if not document:
            raise InvalidInput("body is an empty JSON array: no messages")
        if len(document) > limits.max_messages_per_array:
            raise InvalidInput(f"body is an array of {len(document)} messages, more than "
                               f"{limits.max_messages_per_array}")
        messages: list[RawMessage] = []
        for index, item in enumerate(document):
            try:
                inner = _unwrap(item, ITEM_ENVELOPES, stream, limits, exact, what="it")
            except InvalidInput as exc:
                inner = [RawMessage(None, None, None, None, self.name, error=exc)]
            for message in inner:
                message.position, message.item = index, item
            messages.extend(inner)
        return messages


ITEM_ENVELOPES: tuple[Envelope, ...] = (RoutedCloudEvent(), PlainMessage())
BODY_ENVELOPES: tuple[Envelope, ...] = (MessageArray(), *ITEM_ENVELOPES)


def _unwrap(document: Any, envelopes: tuple[Envelope, ...], stream: Stream, limits: StreamLimits, exact: bool,
            *, what: str) -> list[RawMessage]:
    for envelope in envelopes:
        if envelope.accepts(document):
            return envelope.unwrap(document, stream, limits, exact)
    expected = " or ".join(envelope.name for envelope in envelopes)
    raise InvalidInput(f"{what} is {describe(document)}, expected {expected}")


def unwrap_body(body: bytes, stream: Stream, limits: StreamLimits, *, exact: bool = False) -> list[RawMessage]:
    """The messages in one Event Hub event body; InvalidInput with the reason otherwise.
    ``exact``: every number as written (:func:`parse_json`), the same messages otherwise."""
    if len(body) > limits.max_body_bytes:
        raise InvalidInput(f"body is {len(body)} bytes, more than {limits.max_body_bytes}")
    document = parse_json(body, what="body", exact=exact)
    return _unwrap(document, BODY_ENVELOPES, stream, limits, exact, what="body")
