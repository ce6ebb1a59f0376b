"""Send routed MQTT messages that Event Grid dead-lettered back to their hubs.

The namespace topic's push subscriptions (``to-telemetry``, ``to-inference``,
``to-command-responses``) dead-letter what they could not deliver to their hub into
the ``routing-deadletter`` container (infra/app/eventgrid.bicep). Per the Azure docs
("Dead lettering for event subscriptions to namespace topics"), a blob is
``{namespace}/{topic}/{subscription}/{year}/{month}/{day}/{hour}/{guid}.json`` and
holds one or more dead-lettered CloudEvents (an object, or an array of them), each
either wrapped (``{"event": {...}, "deadletterProperties": {...},
"customDeliveryProperties": {...}}``) or with those objects beside the event's own
attributes; the docs spell the reason's object ``deadletterProperties``,
``deadLetterProperties`` and ``brokerProperties``, so all three are read.

This tool reads every blob not yet replayed (under ``--prefix``), sends each event to
the hub its subscription delivers to, exactly as Event Grid would have (the
structured CloudEvent as the body, the ``deviceid`` enrichment as the partition key),
and then marks the blob with metadata ``replayedat`` so that a second run skips it
(``--again`` sends it anyway). A replayed message reaches the hub with a new sequence
number, like any redelivery. ``--dry-run`` lists what would be sent and sends nothing.

    eval "$(azd env get-values)"
    python -m tools.replay_routing_deadletters --dry-run
    python -m tools.replay_routing_deadletters --prefix "$EVENTGRID_NAMESPACE_NAME/device-messages/to-telemetry/"

It signs in with ``DefaultAzureCredential`` (your ``az login``), which needs Storage
Blob Data Contributor on the container and Azure Event Hubs Data Sender on the hubs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

CONTAINER = "routing-deadletter"
# The namespace topic's push subscriptions (infra/app/eventgrid.bicep, `routes`) and
# the setting naming the hub each delivers to, with its default.
SUBSCRIPTION_HUBS: dict[str, tuple[str, str]] = {
    "to-telemetry": ("TELEMETRY_HUB_NAME", "telemetry"),
    "to-inference": ("INFERENCE_HUB_NAME", "inference"),
    "to-command-responses": ("COMMAND_RESPONSES_HUB_NAME", "command-responses"),
}
# The routing enrichment Event Grid uses as the partition key (deliveryAttributeMappings).
PARTITION_KEY_ATTRIBUTE = "deviceid"
# Why the event was dead-lettered: the docs spell the object three ways.
_DETAILS_KEYS = ("deadletterProperties", "deadLetterProperties", "brokerProperties")
# Everything Event Grid stores beside a dead-lettered event.
_DEAD_LETTER_KEYS = (*_DETAILS_KEYS, "customDeliveryProperties")
REPLAYED = "replayedat"  # blob metadata: when the blob's events were sent again


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered event and where it came from."""

    blob: str
    subscription: str
    event: dict[str, Any]
    reason: str | None
    attempts: int | None

    @property
    def body(self) -> bytes:
        """The event as Event Grid delivers it to a hub: structured CloudEvent JSON."""
        return orjson.dumps(self.event)

    @property
    def partition_key(self) -> str | None:
        key = self.event.get(PARTITION_KEY_ATTRIBUTE)
        return key if isinstance(key, str) and key else None


def subscription_of(blob: str) -> str:
    """The event subscription named by a dead-letter blob's path."""
    parts = blob.split("/")
    if len(parts) != 8 or not parts[7].endswith(".json"):
        raise ValueError(f"blob {blob!r} is not {{namespace}}/{{topic}}/{{subscription}}/{{y}}/{{m}}/{{d}}/{{h}}/"
                         "{guid}.json")
    return parts[2]


def read_dead_letters(blob: str, data: bytes) -> list[DeadLetter]:
    """The dead-lettered events in one blob: a JSON object, an array of them, or one
    per line; ValueError saying what is wrong otherwise."""
    subscription = subscription_of(blob)
    try:
        parsed: Any = orjson.loads(data)
        records = parsed if isinstance(parsed, list) else [parsed]
    except orjson.JSONDecodeError:
        try:
            records = [orjson.loads(line) for line in data.splitlines() if line.strip()]
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"blob {blob!r} is not JSON: {exc}") from None
    letters = []
    for position, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"blob {blob!r}, record {position}: not a JSON object")
        wrapped = record.get("event")
        event = wrapped if isinstance(wrapped, dict) else {
            key: value for key, value in record.items() if key not in _DEAD_LETTER_KEYS}
        if event.get("specversion") != "1.0" or not isinstance(event.get("id"), str):
            raise ValueError(f"blob {blob!r}, record {position}: not a CloudEvent 1.0 (specversion, id)")
        details: dict[str, Any] = next((record[key] for key in _DETAILS_KEYS if isinstance(record.get(key), dict)), {})
        reason, attempts = details.get("deadletterreason"), details.get("deliveryattempts")
        letters.append(DeadLetter(blob, subscription, event, reason if isinstance(reason, str) else None,
                                  attempts if isinstance(attempts, int) else None))
    return letters


def hub_for(subscription: str, environ: Mapping[str, str]) -> str:
    """The hub ``subscription`` delivers to, by the app's hub setting (azd env values)."""
    if subscription not in SUBSCRIPTION_HUBS:
        raise ValueError(f"subscription {subscription!r} is none of {', '.join(SUBSCRIPTION_HUBS)}")
    setting, default = SUBSCRIPTION_HUBS[subscription]
    return environ.get(setting) or default


# --------------------------------------------------------------------------- storage


async def pending_blobs(container: Any, prefix: str = "", *, again: bool = False) -> AsyncIterator[tuple[str, bytes]]:
    """(name, content) of each blob under ``prefix`` not yet replayed (every one with ``again``).
    ``container`` is an ``azure.storage.blob.aio.ContainerClient``."""
    async for blob in container.list_blobs(name_starts_with=prefix or None, include=["metadata"]):
        if again or REPLAYED not in (blob.metadata or {}):
            download = await container.download_blob(blob.name)
            yield blob.name, await download.readall()


async def mark_replayed(container: Any, blob: str, at: datetime) -> None:
    """Record on the blob that its events were sent again (its content stays as it is)."""
    client = container.get_blob_client(blob)
    properties = await client.get_blob_properties()
    await client.set_blob_metadata({**(properties.metadata or {}), REPLAYED: at.astimezone(UTC).isoformat()})


# --------------------------------------------------------------------------- Event Hubs


async def send(producer: Any, letters: Sequence[DeadLetter]) -> None:
    """Send ``letters`` with an ``azure.eventhub.aio.EventHubProducerClient``, batched
    by partition key (a batch has one)."""
    from azure.eventhub import EventData

    by_key: dict[str | None, list[DeadLetter]] = {}
    for letter in letters:
        by_key.setdefault(letter.partition_key, []).append(letter)
    for key, group in by_key.items():
        batch = await producer.create_batch(partition_key=key)
        for letter in group:
            event = EventData(letter.body)
            event.properties = {"replayed-from": letter.blob}
            try:
                batch.add(event)
            except ValueError:  # full: send it and start the next
                await producer.send_batch(batch)
                batch = await producer.create_batch(partition_key=key)
                batch.add(event)
        await producer.send_batch(batch)


async def replay(args: argparse.Namespace) -> int:
    from azure.eventhub.aio import EventHubProducerClient
    from azure.identity.aio import DefaultAzureCredential
    from azure.storage.blob.aio import ContainerClient

    async with DefaultAzureCredential() as credential, ContainerClient(
            args.blob_endpoint, args.container, credential=credential) as container:
        producers: dict[str, Any] = {}
        count = 0
        try:
            async for name, data in pending_blobs(container, args.prefix, again=args.again):
                letters = read_dead_letters(name, data)
                hub = hub_for(subscription_of(name), os.environ)
                for letter in letters:
                    print(f"{name}\t{hub}\t{letter.event.get('id')}\t{letter.event.get('subject')}\t"
                          f"{letter.reason or '-'}\t{letter.attempts if letter.attempts is not None else '-'}")
                count += len(letters)
                if args.dry_run:
                    continue
                if hub not in producers:
                    producers[hub] = EventHubProducerClient(args.eventhub_namespace, hub, credential)
                await send(producers[hub], letters)
                await mark_replayed(container, name, datetime.now(UTC))
        finally:
            for producer in producers.values():
                await producer.close()
    print(f"{count} dead-lettered event(s) {'found' if args.dry_run else 'sent again'}", file=sys.stderr)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Send routed MQTT messages that Event Grid dead-lettered back "
                                                 "to their hubs (docs/deploy.md).")
    parser.add_argument("--blob-endpoint", default=os.environ.get("AZURE_STORAGE_BLOB_ENDPOINT"),
                        help="storage blob endpoint (default: $AZURE_STORAGE_BLOB_ENDPOINT)")
    parser.add_argument("--container", default=os.environ.get("ROUTING_DEADLETTER_CONTAINER") or CONTAINER)
    parser.add_argument("--eventhub-namespace", default=os.environ.get("EVENTHUB_FULLY_QUALIFIED_NAMESPACE"),
                        help="Event Hubs namespace host (default: $EVENTHUB_FULLY_QUALIFIED_NAMESPACE)")
    parser.add_argument("--prefix", default="", help="only blobs under this path")
    parser.add_argument("--dry-run", action="store_true", help="list the dead letters, send nothing")
    parser.add_argument("--again", action="store_true", help="also blobs already replayed")
    args = parser.parse_args(argv)
    if not args.blob_endpoint:
        parser.error("--blob-endpoint or AZURE_STORAGE_BLOB_ENDPOINT is required")
    if not args.dry_run and not args.eventhub_namespace:
        parser.error("--eventhub-namespace or EVENTHUB_FULLY_QUALIFIED_NAMESPACE is required")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(replay(parse_args())))
