"""Alerts to the Event Hub ``ALERTS_HUB_NAME``, when it is set.

The caller forwards alerts after storing them and fails its invocation when
forwarding fails, so the host retries and the alerts are sent again: delivery is
at least once, and a consumer drops repeats by the event's ``message_id`` (the
alert id). Each event is the alert's wire form (the body of ``GET /api/alerts``
items) as ``application/json``, with the device id as partition key, so one
device's alerts land on one partition in time order. Events are batched with
``create_batch`` (a new batch whenever one is full), one device's batches after
another.

One producer per worker process, built at the first alert to send, from
``EventHubConnection`` (a connection string) or
``EventHubConnection__fullyQualifiedNamespace`` with a managed identity. The SDK
(``azure.eventhub``, about 100 ms to import) is imported then too, never when no
hub is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from shared.alerts.settings import AlertSettings
from shared.platform.errors import ConfigurationError
from shared.platform.settings import settings_of

if TYPE_CHECKING:
    from shared.alerts.models import Alert


class Batch(Protocol):
    """What this module uses of ``azure.eventhub.EventDataBatch``."""

    def add(self, event_data: Any) -> None: ...  # ValueError when the batch is full
    def __len__(self) -> int: ...


class Producer(Protocol):
    """What this module uses of ``azure.eventhub.aio.EventHubProducerClient``."""

    async def create_batch(self, *, partition_key: str | None = None) -> Batch: ...
    async def send_batch(self, event_data_batch: Any) -> None: ...
    async def close(self) -> None: ...


class Closeable(Protocol):
    async def close(self) -> None: ...


# settings -> the producer of ALERTS_HUB_NAME and what it owns besides (a credential).
ProducerFactory = Callable[[AlertSettings], tuple[Producer, Closeable | None]]


def producer_client(settings: AlertSettings) -> tuple[Producer, Closeable | None]:
    """A real, not yet connected ``EventHubProducerClient`` of ``ALERTS_HUB_NAME``."""
    from azure.eventhub.aio import EventHubProducerClient

    from shared.platform.storage import identity_credential

    hub, namespace = settings.alerts_hub_name, settings.eventhub_namespace
    if not hub:
        raise ConfigurationError("ALERTS_HUB_NAME is not set")
    if settings.eventhub_connection_string:
        return EventHubProducerClient.from_connection_string(settings.eventhub_connection_string,
                                                             eventhub_name=hub), None
    if not namespace:  # AlertSettings.problems refuses this
        raise ConfigurationError("EventHubConnection is not set")
    credential = identity_credential(settings.eventhub_credential, settings.eventhub_client_id)
    return EventHubProducerClient(fully_qualified_namespace=namespace, eventhub_name=hub,
                                  credential=credential), credential


def _event(alert: Alert) -> Any:
    import orjson
    from azure.eventhub import EventData

    event = EventData(orjson.dumps(alert.to_json_dict()))
    event.content_type = "application/json"
    event.message_id = alert.alert_id
    return event


class AlertHub:
    """Sends alerts to ``ALERTS_HUB_NAME`` with a producer built at the first send."""

    def __init__(self, settings: AlertSettings, factory: ProducerFactory = producer_client) -> None:
        self._settings = settings
        self._factory = factory
        self._client: tuple[Producer, Closeable | None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._settings.alerts_hub_name)

    async def send(self, alerts: Iterable[Alert]) -> None:
        """Send ``alerts`` (each id once), one device's in time order; raise if any
        batch fails (some may have been sent: the retry sends them again)."""
        if not self.enabled:
            return
        by_device: dict[str, dict[str, Alert]] = {}
        for alert in alerts:
            by_device.setdefault(alert.device_id, {}).setdefault(alert.alert_id, alert)
        if not by_device:
            return
        if self._client is None:
            self._client = self._factory(self._settings)
        producer = self._client[0]
        for device_id, device_alerts in by_device.items():
            batch = await producer.create_batch(partition_key=device_id)
            for alert in sorted(device_alerts.values(), key=lambda a: a.timestamp):
                event = _event(alert)
                try:
                    batch.add(event)
                except ValueError:
                    if not len(batch):
                        raise  # larger than an empty batch: never sendable (an alert is a few KiB)
                    await producer.send_batch(batch)
                    batch = await producer.create_batch(partition_key=device_id)
                    batch.add(event)
            await producer.send_batch(batch)

    async def close(self) -> None:
        if self._client is not None:
            producer, owned = self._client
            self._client = None
            await producer.close()
            if owned is not None:
                await owned.close()


_hub: AlertHub | None = None


def alert_hub() -> AlertHub:
    """The process-wide hub sender, from the alert settings at first use."""
    global _hub
    if _hub is None:
        _hub = AlertHub(settings_of(AlertSettings))
    return _hub


async def forward(alerts: list[Alert]) -> None:
    """Send stored ``alerts`` to ``ALERTS_HUB_NAME``; nothing when it is unset."""
    await alert_hub().send(alerts)


async def reset_alert_hub() -> None:
    """Close and forget the process-wide sender (tests change settings)."""
    global _hub
    if _hub is not None:
        await _hub.close()
    _hub = None
