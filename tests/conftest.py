"""Session services (Azurite, Mosquitto on free ports) and the worker's event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from shared.platform.settings import reset_settings
from shared.platform.storage import data_store, reset_data_store
from shared.platform.storage_names import ALERTS_TABLE, DEVICES_TABLE
from standins import invoke
from standins.services import Azurite, Mosquitto, run_azurite, run_mosquitto
from tests.support.openapi_responses import check_response

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, T]], T]


@pytest.fixture(scope="session", autouse=True)
def responses_follow_the_openapi_document() -> Iterator[None]:
    """Every HTTP response any test receives through ``user_function`` is checked
    against the OpenAPI document; a mismatch fails that test at that call."""
    invoke.RESPONSE_CHECKS.append(check_response)
    yield
    invoke.RESPONSE_CHECKS.remove(check_response)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with run_azurite() as service:
        yield service


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    with run_mosquitto() as service:
        yield service


@pytest.fixture(scope="session")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One long-lived loop for every async function, as the worker has."""
    event_loop = asyncio.new_event_loop()
    yield event_loop

    async def close_clients() -> None:  # what the worker process would hold until it exits
        from shared.alerts.forward import reset_alert_hub
        from shared.commands.transports import reset_transport
        from shared.platform.host_storage import reset_queues

        await reset_data_store()
        await reset_queues()
        await reset_transport()
        await reset_alert_hub()

    event_loop.run_until_complete(close_clients())
    event_loop.close()


@pytest.fixture(scope="session")
def run(loop: asyncio.AbstractEventLoop) -> Runner[Any]:
    return loop.run_until_complete


@pytest.fixture(scope="session")
def app_env(azurite: Azurite, mosquitto: Mosquitto, run: Runner[Any]) -> Iterator[Azurite]:
    """The app's settings pointed at the session's services."""
    saved = dict(os.environ)
    os.environ.update({"DataStorage": azurite.connection_string, "AzureWebJobsStorage": azurite.connection_string,
                       "MQTT_BROKER_URL": mosquitto.url,
                       "FLAPPING_DISCONNECTS": "3", "FLAPPING_WINDOW_SECONDS": "600"})
    reset_settings()
    yield azurite
    run(reset_data_store())
    os.environ.clear()
    os.environ.update(saved)
    reset_settings()


@pytest.fixture
def empty_registry(app_env: Azurite, run: Runner[Any]) -> None:
    """Devices and alerts tables without entities, for tests that list them."""

    async def clear() -> None:
        for name in (DEVICES_TABLE, ALERTS_TABLE):
            table = await data_store().table(name)
            async for entity in table.list_entities(select=["PartitionKey", "RowKey"]):
                await table.delete_entity(entity["PartitionKey"], entity["RowKey"])

    run(clear())
