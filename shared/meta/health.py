"""Health: are the settings valid and is ``DataStorage`` reachable?

The route is anonymous, so it says little and costs little: statuses and setting
names only, never a value, an exception's text or a hostname (details go to the
log, without values); and one storage probe per process every
``PROBE_TTL_SECONDS``, shared by every call that arrives meanwhile. The answer is
a plain dict (``shared.meta.models.Health`` describes it in the OpenAPI document)
so that health needs no pydantic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from shared import __version__
from shared.alerts.settings import AlertSettings
from shared.commands.settings import CommandSettings
from shared.lifecycle.settings import LifecycleSettings
from shared.platform.errors import ConfigurationError, is_transient
from shared.platform.host_storage import HostStorageSettings
from shared.platform.metrics_export import MetricsSettings
from shared.platform.settings import settings_problems
from shared.platform.storage import DataStore, data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER, DEVICES_TABLE
from shared.streams.settings import StreamSettings

log = logging.getLogger(__name__)

# Importing a settings class registers it; health validates every registered one.
CAPABILITY_SETTINGS = (AlertSettings, CommandSettings, HostStorageSettings, LifecycleSettings, MetricsSettings,
                       StreamSettings)

TIMEOUT_SECONDS = 5.0
PROBE_TTL_SECONDS = 5.0  # read at each call, so tests can shorten it


class HealthReport(TypedDict):
    status: Literal["ok", "degraded"]
    version: str
    checks: dict[str, str]


async def _table_reachable(store: DataStore) -> None:
    table = await store.table(DEVICES_TABLE)
    async for _ in table.list_entities(results_per_page=1, select=["RowKey"]).by_page():
        break


async def _blob_reachable(store: DataStore) -> None:
    container = await store.container(DEADLETTER_CONTAINER)
    await container.get_container_properties()


async def _check(what: str, probe: Coroutine[Any, Any, None]) -> str:
    from azure.core.exceptions import HttpResponseError

    try:
        await asyncio.wait_for(probe, TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - health reports any failure
        # A refusal (403 for a missing role, 404) will not pass by itself: the deployment is wrong.
        refused = isinstance(exc, HttpResponseError) and not is_transient(exc)
        log.warning("health: %s %s: %s (status %s, code %s)", what, "refused" if refused else "unreachable",
                    type(exc).__name__, getattr(exc, "status_code", None), getattr(exc, "error_code", None))
        return "misconfigured" if refused else "unreachable"
    return "ok"


async def _probe(store: DataStore) -> dict[str, str]:
    table, blob = await asyncio.gather(_check("table storage", _table_reachable(store)),
                                       _check("blob storage", _blob_reachable(store)))
    return {"tableStorage": table, "blobStorage": blob}


@dataclass
class _Probe:
    """One probe of one store on one event loop, and when it finished."""

    store: DataStore
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task[dict[str, str]] = field(init=False)
    finished_at: float | None = None

    def __post_init__(self) -> None:
        self.task = self.loop.create_task(self._run())

    async def _run(self) -> dict[str, str]:
        try:
            return await _probe(self.store)
        finally:
            self.finished_at = time.monotonic()

    def fresh(self, store: DataStore, loop: asyncio.AbstractEventLoop) -> bool:
        return self.store is store and self.loop is loop and (
            self.finished_at is None or time.monotonic() - self.finished_at < PROBE_TTL_SECONDS)


_last: _Probe | None = None


async def storage_checks() -> dict[str, str]:
    """Reachability of table and blob storage, probed at most once per TTL (per store)."""
    global _last
    try:
        store = data_store()
    except ConfigurationError:
        return {"tableStorage": "misconfigured", "blobStorage": "misconfigured"}
    loop = asyncio.get_running_loop()
    if _last is None or not _last.fresh(store, loop):
        _last = _Probe(store, loop)
    # Shielded: a caller that gives up does not cancel the probe the others wait for.
    return await asyncio.shield(_last.task)


_logged_problems: dict[str, str] = {}


def settings_check() -> str:
    """``ok`` or ``invalid: NAME, NAME`` over every capability's settings; the rules
    they break are logged when they change."""
    global _logged_problems
    problems = settings_problems()
    if problems and problems != _logged_problems:
        log.error("invalid settings: %s", "; ".join(f"{name} {rule}" for name, rule in problems.items()))
    _logged_problems = problems
    return f"invalid: {', '.join(problems)}" if problems else "ok"


async def check_health() -> HealthReport:
    checks: dict[str, str] = {**await storage_checks(), "settings": settings_check()}
    status: Literal["ok", "degraded"] = "ok" if all(v == "ok" for v in checks.values()) else "degraded"
    return {"status": status, "version": __version__, "checks": checks}
