"""The host's storage account (``AzureWebJobsStorage``): its queues, which queue
triggers read (the fleet fan-out's ``fleet-fanout``)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from shared.platform.settings import http_url, setting, settings_class, settings_of, storage_connection_string
from shared.platform.storage import CLIENT_OPTIONS, STORAGE_RETRIES, identity_credential, uses_a_proxy

if TYPE_CHECKING:
    from azure.storage.queue.aio import QueueClient


@settings_class
class HostStorageSettings:
    connection_string: str | None = setting("AzureWebJobsStorage", parse=storage_connection_string, secret=True)
    queue_service_uri: str | None = setting("AzureWebJobsStorage__queueServiceUri", parse=http_url)
    client_id: str | None = setting("AzureWebJobsStorage__clientId")
    credential: str | None = setting("AzureWebJobsStorage__credential")

    def problems(self) -> dict[str, str]:
        if self.connection_string or self.queue_service_uri:
            return {}
        return {"AzureWebJobsStorage": "is not set: a connection string, or AzureWebJobsStorage__queueServiceUri "
                                       "for a managed identity"}


_queues: dict[str, Any] = {}


async def queue_client(name: str) -> QueueClient:
    """A client of queue ``name`` in the host's account, created if missing, one per process."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue import TextBase64EncodePolicy
    from azure.storage.queue.aio import QueueClient

    if name not in _queues:
        settings = settings_of(HostStorageSettings)
        # The queue trigger reads base64 text, as the Functions host expects by default.
        options = {"message_encode_policy": TextBase64EncodePolicy(), "use_env_settings": uses_a_proxy(),
                   **STORAGE_RETRIES, **CLIENT_OPTIONS}
        if settings.connection_string:
            client = QueueClient.from_connection_string(settings.connection_string, name, **options)
        else:
            credential = identity_credential(settings.credential, settings.client_id)
            client = QueueClient(str(settings.queue_service_uri), name, credential=credential, **options)
        with contextlib.suppress(ResourceExistsError):
            await client.create_queue()
        _queues[name] = client
    return _queues[name]  # type: ignore[no-any-return]


async def reset_queues() -> None:
    for client in _queues.values():
        await client.close()
    _queues.clear()
