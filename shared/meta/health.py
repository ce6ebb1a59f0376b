"""Health: is the configuration valid and is ``DataStorage`` reachable?"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shared import __version__
from shared.alerts.settings import AlertSettings
from shared.commands.settings import CommandSettings
from shared.lifecycle.settings import LifecycleSettings
from shared.meta.models import Health
from shared.platform.errors import ConfigurationError
from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER, DEVICES_TABLE
from shared.streams.settings import StreamSettings

log = logging.getLogger(__name__)

# Importing a settings class registers it; health validates every registered one.
CAPABILITY_SETTINGS = (AlertSettings, CommandSettings, LifecycleSettings, StreamSettings)
TIMEOUT_SECONDS = 5.0


async def _table_reachable() -> None:
    table = await data_store().table(DEVICES_TABLE)
    async for _ in table.list_entities(results_per_page=1, select=["RowKey"]).by_page():
        break


async def _blob_reachable() -> None:
    container = await data_store().container(DEADLETTER_CONTAINER)
    await container.get_container_properties()


async def _check(probe: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(probe(), TIMEOUT_SECONDS)
    except ConfigurationError as exc:
        return f"misconfigured: {exc}"
    except Exception as exc:  # noqa: BLE001 - health reports any failure
        log.warning("health probe failed: %r", exc)
        return f"unreachable: {type(exc).__name__}"
    return "ok"


async def check_health() -> Health:
    table, blob = await asyncio.gather(_check(_table_reachable), _check(_blob_reachable))
    checks = {"tableStorage": table, "blobStorage": blob}
    status = "ok" if all(v == "ok" for v in checks.values()) else "degraded"
    return Health(status=status, version=__version__, checks=checks)
