"""What the producer sends: a batched message whose events must each be a routed
CloudEvent of the hub, as Event Grid delivers it; one that breaks the contract is refused
whole, as the service refuses a batch it cannot take."""

from __future__ import annotations

from typing import Any

import orjson
from proton import Message, symbol

from standins.eventhub_factory import (
    CLIENT_ROLE_ENRICHMENT,
    DEVICE_ID_ENRICHMENT,
    DEVICE_ROLE,
    ROUTED_EVENT_TYPE,
)
from standins.eventhubs_amqp.frames import message_sections

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
PARTITION_KEY = symbol("x-opt-partition-key")
HUB_SUFFIX = {"telemetry": "/telemetry", "inference": "/inference", "command-responses": "/response"}


class ContractError(ValueError):
    """A batch the service (or Event Grid's contract) would not take, with why."""


def check_event(hub: str, message: Message, partition_key: str) -> dict[str, Any]:
    """One event of a batch against the contract; the CloudEvent."""
    if message.content_type != CONTENT_TYPE:
        # proton reads a missing content type as the symbol 'None'
        given = None if str(message.content_type or "None") == "None" else str(message.content_type)
        raise ContractError(f"content type {given}, not {CONTENT_TYPE}")
    body = message.body
    if not isinstance(body, bytes | memoryview):
        raise ContractError(f"the body is {type(body).__name__}, not one data section")
    try:
        document = orjson.loads(bytes(body))
    except orjson.JSONDecodeError as error:
        raise ContractError(f"the body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ContractError("the body is not a JSON object (a structured CloudEvent)")
    for name, wanted in (("specversion", "1.0"), ("type", ROUTED_EVENT_TYPE), (CLIENT_ROLE_ENRICHMENT, DEVICE_ROLE)):
        if document.get(name) != wanted:
            raise ContractError(f"{name} is {document.get(name)!r}, not {wanted!r}")
    for name in ("id", "source", "time", "subject", DEVICE_ID_ENRICHMENT):
        if not isinstance(document.get(name), str) or not document[name]:
            raise ContractError(f"the CloudEvent has no {name}")
    subject, device = document["subject"], document[DEVICE_ID_ENRICHMENT]
    if not subject.startswith(f"devices/{device}/") or not subject.endswith(HUB_SUFFIX[hub]):
        raise ContractError(f"subject {subject!r} is no topic of device {device!r} that routing sends to {hub}")
    if ("data" in document) == ("data_base64" in document):
        raise ContractError("the CloudEvent needs data (JSON, MQTT v5) or data_base64 (binary), one of them")
    if device != partition_key:
        raise ContractError(f"partition key {partition_key!r} is not the deviceid {device!r}")
    return dict(document)


def check_batch(hub: str, encoded: bytes) -> tuple[str, list[tuple[bytes, dict[str, Any]]]]:
    """A batched message: its partition key and its events (body, application
    properties), each checked."""
    sections = message_sections(encoded)
    annotations = next((value for code, value in sections if code == 0x72), None) or {}
    partition_key = annotations.get(PARTITION_KEY)
    if not isinstance(partition_key, str) or not partition_key:
        raise ContractError("no x-opt-partition-key: Event Grid delivers with the deviceid as the partition key")
    events: list[tuple[bytes, dict[str, Any]]] = []
    for code, value in sections:
        if code != 0x75:
            continue
        inner = Message()
        inner.decode(bytes(value))
        check_event(hub, inner, partition_key)
        events.append((bytes(inner.body), dict(inner.properties or {})))  # type: ignore[arg-type]
    if not events:
        raise ContractError("a batch without events")
    return partition_key, events
