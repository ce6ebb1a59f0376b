"""The process's clients of ``DataStorage`` (async SDKs), created at first use.

One ``TableServiceClient`` and one ``BlobServiceClient`` serve every invocation of
the worker process; table and container clients share their pipelines. Tables and
containers are created if missing, once per process (``azd up`` creates them in
Azure; Azurite starts empty).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, TypeVar, cast

from shared.platform.settings import StorageSettings, settings_of

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient, TableServiceClient
    from azure.storage.blob.aio import BlobServiceClient, ContainerClient


def identity_credential(credential: str | None, client_id: str | None) -> Any:
    """The async credential of an identity-based connection, as the Functions host
    reads one: ``__credential=managedidentity`` (``__clientId`` for a user-assigned
    identity), otherwise ``DefaultAzureCredential``. The caller closes it."""
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if (credential or "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential(managed_identity_client_id=client_id)


C = TypeVar("C")


class DataStore:
    """Lazily built clients of one storage account."""

    def __init__(self, conn: StorageSettings) -> None:
        self._conn = conn
        self._tables: TableServiceClient | None = None
        self._blobs: BlobServiceClient | None = None
        self._credential: Any = None
        self._ready: set[str] = set()
        self._lock = asyncio.Lock()
        # What the process remembers of this account between invocations, one object
        # of a class its owner defines (a row's ETag, a partition's rows, a ledger):
        # never needed for correctness, gone with the clients.
        self.caches: dict[type, object] = {}

    def cache(self, kind: type[C]) -> C:
        """This account's ``kind`` (made on first use with ``kind()``)."""
        found = self.caches.get(kind)
        if found is None:
            found = self.caches[kind] = kind()
        return cast(C, found)

    @property
    def table_service(self) -> TableServiceClient:
        if self._tables is None:
            from azure.data.tables.aio import TableServiceClient

            self._tables = self._client(TableServiceClient, self._conn.table_service_uri, TABLE_RETRIES)
        return self._tables

    @property
    def blob_service(self) -> BlobServiceClient:
        if self._blobs is None:
            from azure.storage.blob.aio import BlobServiceClient

            self._blobs = self._client(BlobServiceClient, self._conn.blob_service_uri, STORAGE_RETRIES)
        return self._blobs

    def _client(self, cls: Any, service_uri: str | None, retries: dict[str, Any]) -> Any:
        options = {**retries, "use_env_settings": uses_a_proxy(), **CLIENT_OPTIONS}
        if self._conn.connection_string:
            return cls.from_connection_string(self._conn.connection_string, **options)
        if self._credential is None:  # one credential, one token cache, for both services
            self._credential = identity_credential(self._conn.credential, self._conn.client_id)
        return cls(service_uri, credential=self._credential, **options)

    async def table(self, name: str) -> TableClient:
        """A client of table ``name``, created in storage if it is missing."""
        await self._ensure(f"table:{name}")
        return self.table_service.get_table_client(name)

    async def container(self, name: str) -> ContainerClient:
        """A client of blob container ``name``, created in storage if it is missing."""
        await self._ensure(f"container:{name}")
        return self.blob_service.get_container_client(name)

    async def _ensure(self, what: str) -> None:
        if what in self._ready:
            return
        async with self._lock:
            if what in self._ready:
                return
            from azure.core.exceptions import HttpResponseError, ResourceExistsError

            kind, name = what.split(":", 1)
            try:
                if kind == "table":
                    await self.table_service.create_table(name)
                else:
                    await self.blob_service.create_container(name)
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                # In Azure the deployment creates them and the identity may hold data
                # roles only; a real absence then shows on the first read or write.
                if exc.status_code != 403:
                    raise
            self._ready.add(what)

    async def close(self) -> None:
        for client in (self._tables, self._blobs, self._credential):
            if client is not None:
                await client.close()
        self._tables = self._blobs = self._credential = None
        self._ready.clear()
        self.caches.clear()


_store: DataStore | None = None
# The host retries a failing invocation (8 times, 5 s doubling to 5 min: the stream
# blueprints), so a client gives up fast and leaves the waiting to the host: 2
# retries, 5 s to connect, 15 s to wait for an answer. With the SDKs' defaults (Blob
# and Queue: 3 retries after 15, 18 and 24 s; Tables: 10) one attempt took 77 s to
# fail against unreachable storage, and the 15 minutes of retries became 27.
TIMEOUTS = {"connection_timeout": 5, "read_timeout": 15}
# Blob and Queue (their own ExponentialRetry, whose first retry counts 1): retries
# after 0.5 + 1.5 = 2 s and 0.5 + 1.5**2 = 2.75 s, each give or take 0.5 s.
STORAGE_RETRIES: dict[str, Any] = {"retry_total": 2, "initial_backoff": 0.5, "increment_base": 1.5,
                                   "random_jitter_range": 0.5, **TIMEOUTS}
# Tables (azure-core's RetryPolicy): retries after 0 s and 0.5 * 2 = 1 s.
TABLE_RETRIES: dict[str, Any] = {"retry_total": 2, "retry_backoff_factor": 0.5, "retry_backoff_max": 4, **TIMEOUTS}
# Keyword options for every client built from now on: the benchmark counts requests
# with a ``raw_request_hook``, the tests inject faults with another.
CLIENT_OPTIONS: dict[str, Any] = {}


# aiohttp reads these for every request when the transport trusts the environment.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "WS_PROXY", "WSS_PROXY")  # as aiohttp reads them


def uses_a_proxy() -> bool:
    """Whether the environment names a proxy. Only then do the clients' transports read
    it (``use_env_settings``): otherwise aiohttp looks up the proxy variables and
    ``~/.netrc`` on every request, a quarter of the worker's CPU of a small request (a
    device's first message in the bench: 2 100 µs with the lookups, 1 600 without)."""
    return any(os.environ.get(name) or os.environ.get(name.lower()) for name in PROXY_VARIABLES)


def data_store() -> DataStore:
    """The process-wide store, built from the ``DataStorage`` setting at first use."""
    global _store
    if _store is None:
        _store = DataStore(settings_of(StorageSettings))
    return _store


async def reset_data_store() -> None:
    """Close and forget the process-wide store (tests change settings)."""
    global _store
    if _store is not None:
        await _store.close()
    _store = None
