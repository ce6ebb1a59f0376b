"""Event Hub batches as the worker passes them to a ``cardinality="many"`` trigger,
decoded by azure-functions' own converter, and the routed CloudEvents inside them."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import azure.functions as func
import orjson
import pytest

from shared.platform.timestamps import parse_timestamp
from shared.streams.decode import Accepted, decode
from standins.eventhub_factory import (
    CLIENT_ROLE_ENRICHMENT,
    DEVICE_ID_ENRICHMENT,
    DEVICE_ROLE,
    ROUTED_EVENT_TYPE,
    STATIC_ENRICHMENTS,
    TOPIC_ENRICHMENT,
    Partition,
    dotnet_datetime,
    events,
    routed_body,
    routed_event,
)
from tests.support.bicep_parse import parse

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "samples"
FIRST = datetime(2026, 11, 20, 8, 15, 0, 250000, tzinfo=UTC)
BODIES = [b'{"n":0}', b'{"n":1, "padding": "' + b"x" * 300 + b'"}', b"not json at all", b"\x00\xff binary"]


def sample(name: str) -> dict[str, Any]:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} is not beside the repository")
    document: dict[str, Any] = orjson.loads(path.read_bytes())
    return document


def offset(event: func.EventHubEvent) -> int:
    """The event's offset: annotated ``str`` by the library, an ``int`` in a batch."""
    value: object = event.offset
    assert isinstance(value, int), f"offset {value!r} is not an int"
    return value


def positions(batch: Sequence[func.EventHubEvent]) -> dict[int, tuple[Any, ...]]:
    out = {}
    for event in batch:
        assert event.sequence_number is not None
        out[event.sequence_number] = (event.offset, event.enqueued_time, event.get_body(), event.partition_key)
    return out


# --- what every event exposes -------------------------------------------------------------


def test_a_batch_decodes_into_one_event_per_body_with_its_position() -> None:
    batch = events(BODIES, hub="inference", partition="3", first_sequence=4711, first_offset=8192,
                   first_enqueued=FIRST, spacing=timedelta(milliseconds=40),
                   partition_keys=["camera-017", None, "camera-018", None])
    assert [type(e) for e in batch] == [func.EventHubEvent] * len(BODIES)
    assert [e.get_body() for e in batch] == BODIES
    assert [e.sequence_number for e in batch] == [4711, 4712, 4713, 4714]
    assert [e.partition_key for e in batch] == ["camera-017", None, "camera-018", None]
    offsets = [offset(e) for e in batch]
    assert offsets[0] == 8192
    # Byte positions: each event starts after the previous one's body, not one further.
    assert all(later - earlier > len(body) for earlier, later, body in zip(offsets, offsets[1:], BODIES, strict=False))


def test_enqueued_times_come_out_naive_holding_utc_as_the_host_writes_them() -> None:
    batch = events(BODIES[:3], first_enqueued=FIRST.astimezone(timezone(timedelta(hours=5))),
                   spacing=timedelta(milliseconds=40))
    expected = [(FIRST + i * timedelta(milliseconds=40)).replace(tzinfo=None) for i in range(3)]
    assert [e.enqueued_time for e in batch] == expected
    assert all(e.enqueued_time is not None and e.enqueued_time.tzinfo is None for e in batch)


def test_every_event_of_a_batch_carries_the_batchs_partition_context() -> None:
    batch = events(BODIES, hub="telemetry", partition="1", namespace="evhns-x.servicebus.windows.net",
                   consumer_group="functions")
    for event in batch:
        assert event.metadata is not None
        assert event.metadata == batch[0].metadata
        assert event.metadata["PartitionContext"]["PartitionId"] == "1"
        assert event.metadata["PartitionContext"]["EventHubName"] == "telemetry"
        assert event.metadata["PartitionContext"]["ConsumerGroup"] == "functions"
        assert event.metadata["PartitionContext"]["FullyQualifiedNamespace"] == "evhns-x.servicebus.windows.net"


def test_the_metadata_arrays_follow_the_events_except_partition_keys() -> None:
    batch = events(BODIES, first_sequence=10, partition_keys=[None, "b", None, "d"],
                   properties=[{"aeg-delivery-count": "0"}, {}, {}, {"aeg-delivery-count": "2"}])
    metadata = batch[0].metadata
    assert metadata is not None
    assert metadata["SequenceNumberArray"] == [e.sequence_number for e in batch]
    assert metadata["OffsetArray"] == [str(e.offset) for e in batch]
    assert [s["SequenceNumber"] for s in metadata["SystemPropertiesArray"]] == [10, 11, 12, 13]
    assert metadata["PropertiesArray"][3] == {"aeg-delivery-count": "2"}
    # The host drops null keys from the string[]: the array does not line up with the events.
    assert metadata["PartitionKeyArray"] == ["b", "d"]


def test_string_bodies_decode_to_the_same_bytes() -> None:
    text = [b'{"n":0}', "caf\u00e9".encode()]
    log = Partition()
    log.publish(text)
    assert [e.get_body() for e in log.deliver(data_type="string")] == text
    assert positions(log.deliver(data_type="string")) == positions(log.deliver())


def test_host_times_have_no_zone_and_at_most_seven_fraction_digits() -> None:
    assert dotnet_datetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05"
    assert dotnet_datetime(datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)) == "2026-01-02T03:04:05.5"
    assert dotnet_datetime(datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)) == "2026-01-02T03:04:05.123456"
    assert dotnet_datetime(datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))) == "2026-01-02T03:04:05"


# --- a partition delivers its log in any batches, and again -------------------------------


def test_a_partition_redelivers_overlapping_ranges_with_the_same_positions() -> None:
    log = Partition("telemetry", "0", first_sequence=100, first_enqueued=FIRST)
    bodies = [orjson.dumps({"n": n, "pad": "y" * n}) for n in range(10)]
    assert log.publish(bodies, partition_keys=[f"camera-{n % 3}" for n in range(10)]) == range(100, 110)
    by_four = [positions(batch) for batch in log.batches(4)]
    assert [sorted(b) for b in by_four] == [[100, 101, 102, 103], [104, 105, 106, 107], [108, 109]]
    everything = {seq: where for batch in by_four for seq, where in batch.items()}
    for batch in [*log.batches(3), log.deliver(range(102, 107)), log.deliver()]:
        for seq, where in positions(batch).items():
            assert everything[seq] == where
    assert [everything[seq][2] for seq in range(100, 110)] == bodies


def test_a_partition_continues_its_numbers_and_times_across_publishes() -> None:
    log = Partition(first_sequence=7, first_offset=0, first_enqueued=FIRST, spacing=timedelta(seconds=1))
    first = log.publish([b"a", b"b"])
    second = log.publish([b"c"])
    assert (first, second) == (range(7, 9), range(9, 10))
    batch = log.deliver(second)
    assert batch[0].enqueued_time == (FIRST + timedelta(seconds=2)).replace(tzinfo=None)
    offsets = [offset(e) for e in log.deliver()]
    assert offsets == sorted(set(offsets))


def test_a_partition_takes_each_events_own_enqueued_time_and_never_goes_back() -> None:
    log = Partition(first_enqueued=FIRST, spacing=timedelta(seconds=1))
    plus5 = timezone(timedelta(hours=5))
    log.publish([b"a", b"b"], enqueued=[FIRST + timedelta(hours=3), (FIRST + timedelta(hours=4)).astimezone(plus5)])
    log.publish([b"c"])  # no time of its own: spacing after the previous event
    assert [e.enqueued_time for e in log.deliver()] == [
        (FIRST + timedelta(hours=h, seconds=s)).replace(tzinfo=None) for h, s in ((3, 0), (4, 0), (4, 1))]
    with pytest.raises(ValueError, match="never go back"):
        log.publish([b"d"], enqueued=[FIRST + timedelta(hours=4)])
    with pytest.raises(ValueError, match="aware"):
        log.publish([b"e"], enqueued=[datetime(2027, 1, 1)])
    with pytest.raises(ValueError, match="1 items for 2 bodies"):
        log.publish([b"f", b"g"], enqueued=[FIRST + timedelta(hours=5)])


@pytest.mark.parametrize("wanted", [range(0, 0), range(1, 4), range(-1, 1), range(0, 3, 2)])
def test_a_partition_refuses_batches_the_host_never_sends(wanted: range) -> None:
    log = Partition()
    log.publish([b"a", b"b", b"c"])
    with pytest.raises(ValueError, match=r"empty batch|not a run"):
        log.deliver(wanted)


def test_a_partition_needs_aware_times_and_real_partition_keys() -> None:
    with pytest.raises(ValueError, match="aware"):
        Partition(first_enqueued=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="partition key"):
        Partition().publish([b"a"], partition_keys=[""])
    with pytest.raises(ValueError, match="2 items for 1 bodies"):
        Partition().publish([b"a"], partition_keys=["x", "y"])


# --- routed CloudEvents ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["routed-telemetry.json", "routed-command-response.json"])
def test_a_routed_json_payload_has_the_shape_of_the_shared_sample(name: str) -> None:
    expected = sample(name)
    built = routed_event(expected["data"], topic=expected["subject"],
                         at=parse_timestamp(expected["time"], field="time"), content_type="application/json")
    # Newer than the shared samples: the role and the topic enrichments.
    assert (built[CLIENT_ROLE_ENRICHMENT], built[TOPIC_ENRICHMENT]) == (DEVICE_ROLE, expected["subject"])
    newer = {*STATIC_ENRICHMENTS, CLIENT_ROLE_ENRICHMENT, TOPIC_ENRICHMENT, "id"}
    assert {k: v for k, v in built.items() if k not in newer} == {k: v for k, v in expected.items() if k != "id"}
    assert built["type"] == ROUTED_EVENT_TYPE
    assert built[DEVICE_ID_ENRICHMENT] == "camera-017"


def test_the_publishing_client_is_the_topics_device_unless_given() -> None:
    assert routed_event({}, topic="devices/site/a/cam-1/inference", at=FIRST)[DEVICE_ID_ENRICHMENT] == "site/a/cam-1"
    assert routed_event({}, topic="devices/cam-1/commands/c-9/response", at=FIRST)[DEVICE_ID_ENRICHMENT] == "cam-1"
    assert routed_event({}, topic="devices/cam-1/telemetry", at=FIRST, client="cam-2")[DEVICE_ID_ENRICHMENT] == "cam-2"
    with pytest.raises(ValueError, match="give client"):
        routed_event({}, topic="devices/cam-1/logs", at=FIRST)


def test_a_routed_binary_payload_has_the_shape_of_the_base64_sample() -> None:
    expected = sample("routed-inference-base64.json")
    payload = base64.b64decode(expected["data_base64"])
    built = routed_event(payload, topic=expected["subject"], at=parse_timestamp(expected["time"], field="time"),
                         payload_format="binary", content_type=expected["datacontenttype"])
    assert {k: built[k] for k in expected if k != "id"} == {k: v for k, v in expected.items() if k != "id"}
    assert base64.b64decode(built["data_base64"]) == payload


def test_a_payload_that_is_not_json_travels_as_a_string_in_data() -> None:
    built = routed_event(b"21.5 degrees", topic="devices/camera-017/telemetry", at=FIRST)
    assert built["data"] == "21.5 degrees"
    assert "data_base64" not in built
    assert routed_event(b'{"a": [1]}', topic="devices/camera-017/telemetry", at=FIRST)["data"] == {"a": [1]}


def test_a_routed_event_keeps_its_id_on_redelivery_and_only_then() -> None:
    def build(payload: Any, at: datetime = FIRST) -> str:
        return str(routed_event(payload, topic="devices/camera-017/telemetry", at=at)["id"])

    assert build({"a": 1}) == build({"a": 1})
    assert len({build({"a": 1}), build({"a": 2}), build({"a": 1}, FIRST + timedelta(microseconds=1))}) == 3


def test_the_enrichments_are_the_ones_the_infrastructure_configures() -> None:
    from tests.support.command_path import routed_configuration

    enrichments = routed_configuration()["routingEnrichments"]  # both writes of the namespace route with it
    assert {item["key"]: item["value"] for item in enrichments["static"]} == STATIC_ENRICHMENTS
    assert [(item["key"], item["value"]) for item in enrichments["dynamic"]] == [
        (DEVICE_ID_ENRICHMENT, "${client.authenticationName}"),
        (TOPIC_ENRICHMENT, "${mqtt.message.topicName}"),
        (CLIENT_ROLE_ENRICHMENT, "${client.attributes.role}")]
    eventgrid = parse((ROOT / "infra" / "app" / "eventgrid.bicep").read_text(encoding="utf-8"))
    assert eventgrid.variables["deviceIdEnrichmentKey"].literal == DEVICE_ID_ENRICHMENT
    assert eventgrid.variables["clientRoleEnrichmentKey"].literal == CLIENT_ROLE_ENRICHMENT
    assert eventgrid.variables["deviceRoleAttribute"].literal == DEVICE_ROLE


def test_routed_events_in_a_batch_are_messages_the_stream_decoder_accepts() -> None:
    telemetry = {"timestamp": "2026-11-20T08:15:59.9Z", "metrics": {"cpuTemp": 61.5}}
    bodies = [routed_body(telemetry, topic="devices/camera-017/telemetry", at=FIRST),
              routed_body(telemetry, topic="devices/camera-018/telemetry", at=FIRST, payload_format="binary")]
    batch = events(bodies, partition_keys=["camera-017", "camera-018"])
    results = [decode("telemetry", event.get_body(), now=FIRST + timedelta(minutes=1)) for event in batch]
    assert all(isinstance(r, Accepted) for found in results for r in found), results
    assert [r.device_id for found in results for r in found if isinstance(r, Accepted)] == [
        e.partition_key for e in batch]
