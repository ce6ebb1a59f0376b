"""The process's transport: the implementation of :class:`~shared.commands.transport.Transport`
that ``COMMAND_TRANSPORT`` names, in a module of its own so that the interface knows
no implementation. Neither paho nor aiohttp is imported before its first use.
"""

from __future__ import annotations

from shared.commands.transport import Transport
from shared.platform.settings import settings_of

_transport: Transport | None = None


def transport() -> Transport:
    """The process's transport, built from ``CommandSettings`` at first use (no I/O:
    it connects at its first publish)."""
    global _transport
    if _transport is None:
        from shared.commands.settings import CommandSettings

        settings = settings_of(CommandSettings)
        if settings.command_transport == "eventgrid":
            from shared.commands.eventgrid_transport import EventGridTransport

            assert settings.eventgrid_mqtt_hostname  # CommandSettings.problems() checks it
            _transport = EventGridTransport(settings.eventgrid_mqtt_hostname,
                                            api_version=settings.eventgrid_publish_api_version)
        else:
            from shared.commands.mqtt_transport import MqttTransport

            _transport = MqttTransport.from_url(
                settings.mqtt_broker_url, username=settings.mqtt_username, password=settings.mqtt_password)
    return _transport


async def reset_transport() -> None:
    """Close and forget the process's transport (tests change settings)."""
    global _transport
    current, _transport = _transport, None
    if current is not None:
        await current.close()
