"""How commands and broadcasts leave the cloud: one MQTT v5 publish at QoS 1.

Two transports implement :class:`Transport`, chosen by ``COMMAND_TRANSPORT``:

- ``mqtt`` (:mod:`shared.commands.mqtt_transport`): any MQTT v5 broker, one paho
  connection per worker process (``MQTT_BROKER_URL``, ``MQTT_USERNAME``, ``MQTT_PASSWORD``);
- ``eventgrid`` (:mod:`shared.commands.eventgrid_transport`): the Event Grid MQTT
  broker's HTTP Publish with the app's Entra identity (``EVENTGRID_MQTT_HOSTNAME``).

Either returns once the broker has taken the message (PUBACK, or the HTTP answer) and
raises :class:`PublishError` otherwise, saying whether a retry could succeed. This
module knows no implementation (they import it); :mod:`shared.commands.transports`
chooses one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# What a transient failure suggests to the caller (``Retry-After``) when the broker said nothing.
DEFAULT_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class Publication:
    """One MQTT v5 PUBLISH, as the device will receive it."""

    topic: str
    payload: bytes  # JSON
    expiry_seconds: int  # MQTT v5 message expiry interval
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


class PublishError(Exception):
    """The broker did not take the message. ``reason`` names what failed without any
    secret; ``transient`` says a later attempt may succeed (answer 503 with
    ``Retry-After: retry_after``), otherwise retrying cannot help (502)."""

    def __init__(self, reason: str, *, transient: bool, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.retry_after = (retry_after or DEFAULT_RETRY_AFTER_SECONDS) if transient else None


class Transport(Protocol):
    async def publish(self, publication: Publication) -> None:
        """Publish at QoS 1 and return once the broker acknowledged it; raise PublishError."""

    async def close(self) -> None:
        """Release the connection or session (the next publish opens a new one)."""
