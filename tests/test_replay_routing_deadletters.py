"""Replaying routed messages Event Grid dead-lettered: the blobs in both documented
shapes give back the original events, which go to their subscription's hub as bodies
the ingest functions accept; a replayed blob is marked and skipped next time."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from azure.storage.blob.aio import ContainerClient

from shared.streams.decode import Accepted, decode
from standins.eventhub_factory import events, routed_event
from standins.services import Azurite
from tests.conftest import Runner
from tests.support.infra import INFRA, MAIN_BICEP, app_settings, bicep, literal, prop
from tools.replay_routing_deadletters import (
    REPLAYED,
    SUBSCRIPTION_HUBS,
    DeadLetter,
    hub_for,
    mark_replayed,
    pending_blobs,
    read_dead_letters,
    subscription_of,
)

AT = datetime(2026, 11, 20, 8, 16, tzinfo=UTC)
BLOB = "evgns-edge/device-messages/to-telemetry/2026/11/20/8/480b2295-0c38-40d0-b25a-f34b30aac1a9.json"
DETAILS = {"deadletterreason": "Maximum delivery attempts reached", "deliveryattempts": 10,
           "deliveryresult": "Forbidden", "publishutc": "2026-11-20T08:16:00.1234567Z",
           "deliveryattemptutc": "2026-11-20T08:40:00.7654321Z"}


def telemetry(device: str = "camera-017", n: int = 0) -> dict[str, Any]:
    return routed_event({"timestamp": "2026-11-20T08:15:59.9Z", "sequence": n, "metrics": {"cpuTemp": 61.5}},
                        topic=f"devices/{device}/telemetry", at=AT + timedelta(seconds=n),
                        content_type="application/json")


def wrapped(event: dict[str, Any], details: str = "deadletterProperties") -> dict[str, Any]:
    return {"event": event, "customDeliveryProperties": {"PartitionKey": event["deviceid"]}, details: DETAILS}


def wrapped_in_an_array(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"deadLetterProperties": DETAILS, "event": event}]


def flat(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "customDeliveryProperties": {}, "brokerProperties": DETAILS}


# --- reading a blob -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [wrapped, flat, wrapped_in_an_array], ids=["wrapped", "beside", "array"])
def test_a_dead_letter_gives_back_the_routed_event_and_why_it_was_dead_lettered(shape: Any) -> None:
    original = telemetry()
    (letter,) = read_dead_letters(BLOB, orjson.dumps(shape(original)))
    assert letter.event == original
    assert (letter.subscription, letter.reason, letter.attempts) == ("to-telemetry", DETAILS["deadletterreason"], 10)
    assert letter.partition_key == "camera-017"
    assert orjson.loads(letter.body) == original


@pytest.mark.parametrize("layout", ["array", "lines"])
def test_a_blob_may_hold_several_dead_letters(layout: str) -> None:
    originals = [telemetry("camera-017", 0), telemetry("camera-018", 1), telemetry("camera-017", 2)]
    records = [wrapped(originals[0]), flat(originals[1]), wrapped(originals[2])]
    data = orjson.dumps(records) if layout == "array" else b"\n".join(orjson.dumps(r) for r in records) + b"\n"
    letters = read_dead_letters(BLOB, data)
    assert [letter.event for letter in letters] == originals
    assert [letter.partition_key for letter in letters] == ["camera-017", "camera-018", "camera-017"]


@pytest.mark.parametrize(
    ("blob", "data", "reason"),
    [
        (BLOB, b"{not json", "is not JSON"),
        (BLOB, b"[1, 2]", "record 0: not a JSON object"),
        (BLOB, orjson.dumps({"event": {"id": "x"}}), "record 0: not a CloudEvent"),
        (BLOB, orjson.dumps([wrapped(telemetry()), {"specversion": "1.0"}]), "record 1: not a CloudEvent"),
        ("to-telemetry/480b2295.json", orjson.dumps(wrapped(telemetry())), "is not {namespace}/{topic}"),
    ],
)
def test_a_blob_that_holds_no_dead_lettered_cloud_event_is_refused_with_the_reason(
        blob: str, data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        read_dead_letters(blob, data)


def test_replayed_bodies_are_messages_the_ingest_functions_accept() -> None:
    letters = read_dead_letters(BLOB, orjson.dumps([wrapped(telemetry("camera-017")), flat(telemetry("camera-018"))]))
    batch = events([letter.body for letter in letters], partition_keys=[letter.partition_key for letter in letters])
    results = [r for event in batch for r in decode("telemetry", event.get_body(), now=AT + timedelta(hours=1))]
    assert all(isinstance(r, Accepted) for r in results), results
    assert [r.device_id for r in results if isinstance(r, Accepted)] == ["camera-017", "camera-018"]


# --- where a dead letter goes -----------------------------------------------------------------


def test_each_push_subscription_of_the_infrastructure_has_its_hub() -> None:
    routes = bicep(INFRA / "app" / "eventgrid.bicep").variables["routes"]
    main = bicep(MAIN_BICEP)
    settings = app_settings()
    found = {}
    for route in routes.items:
        hub_param = prop(route, "hub").text  # type: ignore[union-attr]
        default = main.params[hub_param].default
        assert default is not None
        found[str(literal(route, "subscription"))] = (hub_param, default.literal)
    assert set(found) == set(SUBSCRIPTION_HUBS)
    for subscription, (setting, default_hub) in SUBSCRIPTION_HUBS.items():
        hub_param, infra_default = found[subscription]
        assert infra_default == default_hub, subscription
        assert settings.get(setting).text == hub_param, setting  # type: ignore[union-attr]
        assert hub_for(subscription, {}) == default_hub


def test_the_hub_follows_the_apps_hub_setting() -> None:
    assert hub_for("to-inference", {"INFERENCE_HUB_NAME": "inference-eu"}) == "inference-eu"
    assert subscription_of(BLOB) == "to-telemetry"
    with pytest.raises(ValueError, match="to-alerts"):
        hub_for("to-alerts", {})


# --- the container, against Azurite ----------------------------------------------------------


@pytest.fixture
def container(azurite: Azurite, run: Runner[Any]) -> Iterator[ContainerClient]:
    client = ContainerClient.from_connection_string(azurite.connection_string, f"dl{uuid.uuid4().hex}")

    async def create() -> None:
        await client.create_container()

    async def remove() -> None:
        await client.delete_container()
        await client.close()

    run(create())
    yield client
    run(remove())


def test_a_replayed_blob_is_marked_and_skipped_until_asked_again(container: ContainerClient, run: Runner[Any]) -> None:
    telemetry_blob = BLOB
    other_telemetry = BLOB.replace("/8/480b", "/9/590c")
    inference_blob = BLOB.replace("to-telemetry", "to-inference")
    contents = {name: orjson.dumps(wrapped(telemetry(n=n))) for n, name in
                enumerate([telemetry_blob, other_telemetry, inference_blob])}

    async def scenario() -> list[list[str]]:
        for name, data in contents.items():
            await container.upload_blob(name, data, metadata={"source": "eventgrid"})

        async def pending(prefix: str, again: bool = False) -> list[str]:
            found = []
            async for name, data in pending_blobs(container, prefix, again=again):
                assert data == contents[name]
                found.append(name)
            return found

        prefix = "evgns-edge/device-messages/to-telemetry/"
        before = await pending(prefix)
        await mark_replayed(container, telemetry_blob, AT)
        after = await pending(prefix)
        everything = await pending("", again=True)
        properties = await container.get_blob_client(telemetry_blob).get_blob_properties()
        assert properties.metadata == {"source": "eventgrid", REPLAYED: AT.isoformat()}
        assert await (await container.download_blob(telemetry_blob)).readall() == contents[telemetry_blob]
        return [before, after, everything]

    before, after, everything = run(scenario())
    assert sorted(before) == sorted([telemetry_blob, other_telemetry])
    assert after == [other_telemetry]
    assert sorted(everything) == sorted(contents)


def test_dead_letters_read_from_the_container_name_their_subscription(
        container: ContainerClient, run: Runner[Any]) -> None:
    inference_blob = BLOB.replace("to-telemetry", "to-inference")

    async def scenario() -> list[DeadLetter]:
        await container.upload_blob(inference_blob, orjson.dumps([flat(telemetry())]))
        return [letter async for name, data in pending_blobs(container) for letter in read_dead_letters(name, data)]

    (letter,) = run(scenario())
    assert hub_for(letter.subscription, {}) == "inference"
