"""Event Grid MQTT client life cycle events as the service sends them (Event Grid
schema or CloudEvents 1.0), and their decoding into the azure-functions objects the
Python worker hands to ``client_lifecycle``. Used by the tests, demo and benchmark."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import azure.functions as func
import orjson

from standins import triggers
from standins.host import converted

NAMESPACE = "evgns-edge"
SOURCE = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-edge"
          f"/providers/Microsoft.EventGrid/namespaces/{NAMESPACE}")
PREFIX = "Microsoft.EventGrid."


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"  # the service's 7 digits


def _event(event_type: str, subject: str, data: dict[str, Any], at: datetime, schema: str) -> dict[str, Any]:
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event_type}|{subject}|{orjson.dumps(data).decode()}|{at}"))
    if schema == "cloudevents":
        return {"specversion": "1.0", "id": event_id, "time": _time(at), "type": PREFIX + event_type,
                "source": SOURCE, "subject": subject, "data": data}
    return {"id": event_id, "topic": SOURCE, "subject": subject, "eventType": PREFIX + event_type,
            "eventTime": _time(at), "dataVersion": "1", "metadataVersion": "1", "data": data}


def connected(device: str, seq: int, at: datetime, *, session: str | None = None,
              schema: str = "eventgrid") -> dict[str, Any]:
    session = session or f"{device}-session"
    data = {"namespaceName": NAMESPACE, "clientAuthenticationName": device, "clientSessionName": session,
            "sequenceNumber": seq}
    return _event("MQTTClientSessionConnected", f"clients/{device}/sessions/{session}", data, at, schema)


def disconnected(device: str, seq: int, at: datetime, *, reason: str = "ClientInitiatedDisconnect",
                 session: str | None = None, schema: str = "eventgrid") -> dict[str, Any]:
    session = session or f"{device}-session"
    data = {"namespaceName": NAMESPACE, "clientAuthenticationName": device, "clientSessionName": session,
            "sequenceNumber": seq, "disconnectionReason": reason}
    return _event("MQTTClientSessionDisconnected", f"clients/{device}/sessions/{session}", data, at, schema)


def created_or_updated(device: str, updated_on: datetime, *, created_on: datetime | None = None,
                       state: str = "Enabled", attributes: dict[str, Any] | None = None,
                       schema: str = "eventgrid") -> dict[str, Any]:
    data = {"namespaceName": NAMESPACE, "clientName": device, "clientAuthenticationName": device,
            "state": state, "attributes": attributes or {},
            "createdOn": _time(created_on or updated_on), "updatedOn": _time(updated_on)}
    return _event("MQTTClientCreatedOrUpdated", f"clients/{device}", data, updated_on, schema)


def deleted(device: str, at: datetime, *, schema: str = "eventgrid") -> dict[str, Any]:
    data = {"namespaceName": NAMESPACE, "clientName": device, "clientAuthenticationName": device}
    return _event("MQTTClientDeleted", f"clients/{device}", data, at, schema)


def to_function_event(document: dict[str, Any]) -> func.EventGridEvent | func.CloudEvent:
    """One event as the worker hands it to ``client_lifecycle`` (the runtime's own
    conversion of what the host sends): a CloudEvent becomes ``func.CloudEvent``,
    which the worker passes to a function annotated with ``func.EventGridEvent`` all
    the same."""
    event: func.EventGridEvent | func.CloudEvent = converted("eventGridTrigger", triggers.event_grid(document))
    return event
