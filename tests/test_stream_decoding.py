"""Decoding stream bodies: envelopes peel off the transport, strict models validate,
and every bad body ends as one rejection with a readable reason, never an exception."""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.platform.errors import InvalidInput
from shared.platform.timestamps import parse_timestamp
from shared.streams.decode import Accepted, Rejected, decode
from shared.streams.envelopes import Stream
from shared.streams.limits import DEFAULT_LIMITS, StreamLimits
from shared.streams.messages import InferenceMessage, TelemetryMessage, bounded_models
from tests.support.stream_corpus import (
    CORPUS,
    DEVICE,
    GOOD,
    NOW,
    accepted,
    b64,
    event,
    inference,
    rejected,
    routed,
    telemetry,
)

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def sample(name: str) -> bytes:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} is not beside the repository")
    return path.read_bytes()


# --- the shared samples, one per envelope -------------------------------------------------


def test_routed_telemetry_sample_is_accepted_with_the_topics_device() -> None:
    [result] = accepted("telemetry", sample("routed-telemetry.json"))
    assert result.device_id == DEVICE
    assert result.topic == f"devices/{DEVICE}/telemetry"
    assert isinstance(result.message, TelemetryMessage)
    assert result.message.metrics["door"] == "closed"
    assert result.message.timestamp == datetime(2026, 11, 20, 8, 15, 59, 900000, tzinfo=UTC)
    assert result.archive["deviceId"] == DEVICE
    assert result.archive["message"] == orjson.loads(sample("routed-telemetry.json"))["data"]


def enriched(body: bytes, **attributes: str) -> bytes:
    """A routed sample with the broker's enrichments this infrastructure adds (the
    sample was taken without them)."""
    document = orjson.loads(body)
    return orjson.dumps({**document, "deviceid": document["subject"].split("/")[1], **attributes})


def test_routed_base64_inference_sample_is_decoded_from_data_base64() -> None:
    [result] = accepted("inference", enriched(sample("routed-inference-base64.json")))
    assert isinstance(result.message, InferenceMessage)
    assert result.device_id == DEVICE
    assert result.message.model.name == "yolo-safety"
    assert result.message.detections[0].bbox == [0.12, 0.08, 0.2, 0.31]
    assert result.archive["message"]["inferenceId"] == "inf-001"


def test_iot_operations_array_sample_yields_each_message_with_its_own_device_and_position() -> None:
    results = accepted("telemetry", sample("iot-operations-batch.json"))
    assert [(r.device_id, r.position) for r in results] == [("plc-line2-04", 0), ("plc-line2-05", 1)]
    assert all(r.topic is None for r in results)
    # "ts" is the alias of "timestamp": the message keeps it, the line's own timestamp is the contract's name.
    assert results[0].archive["timestamp"] == results[0].archive["message"]["ts"] == "2026-11-20T08:16:02Z"
    assert "timestamp" not in results[0].archive["message"]


def test_a_telemetry_sample_on_the_inference_stream_is_rejected_by_its_topic() -> None:
    result = rejected("inference", sample("routed-telemetry.json"))
    assert "devices/{deviceId}/inference" in result.reason
    assert result.body == sample("routed-telemetry.json")


# --- built bodies -----------------------------------------------------------------------


def test_data_may_be_a_string_holding_json() -> None:
    [result] = accepted("telemetry", routed(orjson.dumps(telemetry()).decode(), datacontenttype="text/plain"))
    assert result.archive["message"] == telemetry()


def test_data_base64_is_decoded_whatever_json_compatible_content_type_it_declares() -> None:
    encoded = base64.b64encode(orjson.dumps(inference())).decode()
    for content_type in ("application/octet-stream", "application/json; charset=utf-8", "application/cloudevents+json",
                         None):
        body = orjson.dumps(event(stream="inference", data_base64=encoded, datacontenttype=content_type))
        [result] = accepted("inference", body)
        assert result.archive["message"] == inference()


def test_a_routed_event_without_the_enrichment_is_rejected_as_spoofed_whatever_its_topic() -> None:
    [result] = decode("telemetry", routed(deviceid=None), now=NOW)
    assert isinstance(result, Rejected) and "spoofed" in result.reason


def test_a_payload_device_id_that_agrees_with_the_topic_is_accepted() -> None:
    [result] = accepted("telemetry", routed(telemetry(deviceId=DEVICE)))
    assert result.device_id == DEVICE


def test_a_payload_device_id_that_differs_from_the_topic_is_rejected_as_spoofed() -> None:
    result = rejected("telemetry", routed(telemetry(deviceId="camera-018")))
    assert "spoofed" in result.reason and "camera-018" in result.reason
    assert result.errors[0]["loc"] == ["deviceId"]


def test_an_enrichment_that_differs_from_the_topic_is_rejected() -> None:
    result = rejected("telemetry", routed(deviceid="camera-018"))
    assert "deviceid does not match" in result.reason


def test_a_plain_message_needs_its_device_id() -> None:
    [result] = accepted("telemetry", orjson.dumps(telemetry(deviceId="plc-1")))
    assert (result.device_id, result.topic, result.position) == ("plc-1", None, None)
    assert "deviceId is required" in rejected("telemetry", orjson.dumps(telemetry())).reason


def test_an_array_may_mix_routed_events_and_plain_messages() -> None:
    body = orjson.dumps([event(telemetry()), telemetry(deviceId="plc-1")])
    assert [r.device_id for r in accepted("telemetry", body)] == [DEVICE, "plc-1"]


def test_in_an_array_each_message_stands_alone() -> None:
    bad = telemetry(deviceId="b", metrics={"x": [1]})
    body = orjson.dumps([telemetry(deviceId="a"), bad, "not a message", telemetry(deviceId="c")])
    good_a, rejection, not_a_message, good_c = decode("telemetry", body, now=NOW)
    assert isinstance(good_a, Accepted) and isinstance(good_c, Accepted)
    assert (good_a.device_id, good_a.position, good_c.device_id, good_c.position) == ("a", 0, "c", 3)
    assert isinstance(rejection, Rejected) and isinstance(not_a_message, Rejected)
    assert rejection.reason.startswith("message 1: ")
    assert rejection.errors[0]["loc"] == [1, "metrics", "x"]
    assert (rejection.position, orjson.loads(rejection.body)) == (1, bad)
    assert not_a_message.reason.startswith("message 2: ") and orjson.loads(not_a_message.body) == "not a message"


def test_unknown_fields_are_kept_in_the_archive_line_at_every_level() -> None:
    payload = inference(firmware={"build": 42, "flags": ["a", "b"]}, frameId="f-9")
    payload["model"]["quantised"] = True
    payload["detections"][0]["trackId"] = 17
    [result] = accepted("inference", routed(payload, stream="inference"))
    assert result.archive["message"]["firmware"] == {"build": 42, "flags": ["a", "b"]}
    assert result.archive["message"]["model"]["quantised"] is True
    assert result.archive["message"]["detections"][0]["trackId"] == 17
    assert result.message.model_extra == {"firmware": {"build": 42, "flags": ["a", "b"]}}
    assert orjson.loads(orjson.dumps(result.archive)) == {"deviceId": DEVICE, "timestamp": payload["timestamp"],
                                                          "message": payload}


def test_the_archive_line_keeps_numbers_as_sent_and_gives_an_offset_timestamp_in_utc_beside_the_message() -> None:
    [result] = accepted("telemetry", routed(telemetry(timestamp="2026-11-20T09:15:59.5+01:00")))
    assert result.archive["timestamp"] == "2026-11-20T08:15:59.500000Z"
    message = result.archive["message"]
    assert message["timestamp"] == "2026-11-20T09:15:59.5+01:00"
    assert message["metrics"]["fps"] == 30 and isinstance(message["metrics"]["fps"], int)
    assert message["sequence"] == 7


def test_a_timestamp_within_the_allowed_skew_is_accepted_and_beyond_it_rejected() -> None:
    limits = StreamLimits(max_future_skew=60)
    near = (NOW + timedelta(seconds=59)).isoformat().replace("+00:00", "Z")
    far = (NOW + timedelta(seconds=61)).isoformat().replace("+00:00", "Z")
    accepted("telemetry", routed(telemetry(timestamp=near)), limits)
    assert "clock skew" in rejected("telemetry", routed(telemetry(timestamp=far)), limits).reason


def test_size_bounds_come_from_the_limits_given() -> None:
    assert "metrics: Dictionary should have at most 2 items" in rejected(
        "telemetry", routed(), StreamLimits(max_metrics=2)).reason
    two = routed(inference(detections=[inference()["detections"][0]] * 2), stream="inference")
    assert "detections: List should have at most 1 item" in rejected(
        "inference", two, StreamLimits(max_detections=1)).reason
    short_keys = StreamLimits(max_key_length=4)
    assert "at most 4 characters" in rejected("telemetry", routed(telemetry(metrics={"abcde": 1})), short_keys).reason
    accepted("telemetry", routed(telemetry(metrics={"abcd": 1}, tags={"site": "p3"})), short_keys)
    accepted("telemetry", routed())  # the defaults again


def test_metric_values_may_be_numbers_booleans_or_strings() -> None:
    metrics = {"f": 1.5, "i": -3, "big": 2**63 - 1, "b": True, "s": "ok", "empty": ""}
    [result] = accepted("telemetry", routed(telemetry(metrics=metrics)))
    assert result.archive["message"]["metrics"] == metrics
    assert isinstance(result.message, TelemetryMessage)
    assert result.message.metrics["b"] is True and result.message.metrics["i"] == -3


def test_the_models_refuse_nan_and_infinity_from_python_callers_too() -> None:
    """orjson never yields them; a caller that builds dicts itself gets no pass."""
    models = bounded_models(DEFAULT_LIMITS)
    with pytest.raises(ValidationError, match="finite number"):
        models.telemetry.model_validate({**telemetry(), "metrics": {"t": math.nan}})
    with pytest.raises(ValidationError, match="finite number"):
        models.inference.model_validate(inference(latencyMs=math.inf))


def test_a_detection_may_have_no_bbox_and_a_result_no_detections() -> None:
    accepted("inference", routed(inference(detections=[]), stream="inference"))
    [result] = accepted("inference", routed(inference(detections=[{"label": "person", "confidence": 1}]),
                                            stream="inference"))
    assert isinstance(result.message, InferenceMessage)
    assert result.message.detections[0].bbox is None


# --- the bad-input corpus -----------------------------------------------------------------


def test_the_corpus_has_at_least_thirty_cases_with_distinct_names() -> None:
    assert len(CORPUS) >= 30
    assert len({name for name, *_ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("name", "stream", "body", "expected"), CORPUS, ids=[case[0] for case in CORPUS])
def test_bad_input_ends_as_one_rejection_with_a_readable_reason(name: str, stream: Stream, body: bytes,
                                                                 expected: str) -> None:
    results = decode(stream, body, now=NOW)
    [result] = [r for r in results if isinstance(r, Rejected)]
    assert expected in result.reason, result.reason
    assert len(result.reason) < 400
    if result.position is None:
        assert results == [result] and result.body == body, "an unreadable body is kept as it arrived"
    else:
        assert result.body == orjson.dumps(orjson.loads(body)[result.position]), "a bad element is kept alone"
    assert len(result.errors) <= 20
    orjson.dumps(result.errors)  # goes into a dead letter as JSON
    assert all(set(error) == {"type", "loc", "msg"} for error in result.errors)


def test_the_corpus_bodies_are_valid_once_their_one_fault_is_removed() -> None:
    """The corpus tests the fault, not a broken builder."""
    accepted("telemetry", GOOD)
    accepted("telemetry", routed(telemetry(x=[[[[1]]]])))
    accepted("telemetry", orjson.dumps(telemetry(deviceId="d")))
    accepted("inference", routed(inference(), stream="inference"))


# --- properties ---------------------------------------------------------------------------

keys = st.text(min_size=1, max_size=20)
scalars = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**63), 2**63 - 1),
                    st.booleans(), st.text(max_size=30))
instants = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2026, 11, 20),
                        timezones=st.just(UTC))
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def valid_telemetry(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {
        draw(st.sampled_from(["timestamp", "ts"])): draw(instants).astimezone(draw(offsets)).isoformat(),
        "metrics": draw(st.dictionaries(keys, scalars, max_size=8)),
    }
    if draw(st.booleans()):
        message["tags"] = draw(st.dictionaries(keys, st.text(max_size=20), max_size=4))
    if draw(st.booleans()):
        message["sequence"] = draw(st.integers(0, 2**63 - 1))
    return message


@st.composite
def valid_cases(draw: st.DrawFn) -> tuple[bytes, list[dict[str, Any]]]:
    """A valid body in any envelope, and the messages in it."""
    device = draw(st.text(alphabet="abcdefghij0123456789-_.:", min_size=1, max_size=20))
    kind = draw(st.sampled_from(["data", "string", "base64", "plain", "array"]))
    message = draw(valid_telemetry())
    if kind == "data":
        return orjson.dumps(event(message, device=device)), [message]
    if kind == "string":
        return orjson.dumps(event(orjson.dumps(message).decode(), device=device)), [message]
    if kind == "base64":
        return orjson.dumps(event(device=device, data_base64=b64(orjson.dumps(message)))), [message]
    if kind == "plain":
        return orjson.dumps({**message, "deviceId": device}), [message]
    messages = [{**draw(valid_telemetry()), "deviceId": device} for _ in range(draw(st.integers(1, 4)))]
    return orjson.dumps(messages), messages


valid_bodies = valid_cases().map(lambda case: case[0])


json_values = st.recursive(st.none() | scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A valid body cut short, with a byte changed, or with a field replaced by any JSON value."""
    body = draw(valid_bodies)
    how = draw(st.sampled_from(["cut", "byte", "field"]))
    if how == "cut":
        return body[: draw(st.integers(0, len(body) - 1))]
    if how == "byte":
        at = draw(st.integers(0, len(body) - 1))
        return body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1:]
    document = orjson.loads(body)
    outer = document[0] if isinstance(document, list) else document
    target = draw(st.sampled_from([outer, outer["data"]] if isinstance(outer.get("data"), dict) else [outer]))
    target[draw(st.sampled_from([*target, "metrics", "tags", "deviceId", "sequence", "x"]))] = draw(json_values)
    return orjson.dumps(document)


bodies = st.one_of(valid_bodies, damaged(), st.binary(max_size=300), json_values.map(orjson.dumps),
                   st.sampled_from([case[2] for case in CORPUS if case[1] == "telemetry"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(bodies, min_size=1, max_size=8))
def test_any_body_yields_one_result_per_message_or_one_rejection_and_never_raises(batch: list[bytes]) -> None:
    for body in batch:
        results = decode("telemetry", body, now=NOW)
        assert results
        whole = [r for r in results if isinstance(r, Rejected) and r.position is None]
        if whole:
            assert results == whole and whole[0].reason and whole[0].body == body
            continue
        document = orjson.loads(body)
        if isinstance(document, list):  # one result per element, in order
            assert [r.position for r in results] == list(range(len(document)))
        for result in results:
            if isinstance(result, Rejected):
                assert result.reason.startswith(f"message {result.position}: ")
                assert orjson.loads(result.body) == document[result.position]
            else:
                assert orjson.loads(orjson.dumps(result.archive))["deviceId"] == result.device_id


@settings(max_examples=200, deadline=None)
@given(valid_cases())
def test_valid_bodies_are_accepted_with_their_metrics_kept_verbatim(case: tuple[bytes, list[dict[str, Any]]]) -> None:
    body, messages = case
    results = accepted("telemetry", body)
    assert [r.archive["message"]["metrics"] for r in results] == [m["metrics"] for m in messages]


@settings(max_examples=300, deadline=None)
@given(instants, st.integers(0, 999_999_999), st.integers(0, 9))
def test_the_one_parser_reads_a_z_timestamp_as_it_reads_the_same_time_at_offset_zero(
        instant: datetime, nanos: int, digits: int) -> None:
    """parse_timestamp reads the common ``...Z`` form on a fast path; it must agree
    with the general path (``+00:00``) to the microsecond, and refuse the same."""
    text = instant.strftime("%Y-%m-%dT%H:%M:%S") + (f".{nanos:09d}"[: digits + 1] if digits else "")
    assert parse_timestamp(text + "Z", field="t") == parse_timestamp(text + "+00:00", field="t")
    for bad in (text[:5] + "13" + text[7:], text[:11] + "24" + text[13:], text[:17] + "61" + text[19:],
                "2150" + text[4:], "1969" + text[4:]):
        with pytest.raises(InvalidInput) as fast:
            parse_timestamp(bad + "Z", field="t")
        with pytest.raises(InvalidInput) as general:
            parse_timestamp(bad + "+00:00", field="t")
        assert fast.value.reason == general.value.reason


def test_a_routed_message_without_the_brokers_device_enrichment_is_rejected_as_spoofed() -> None:
    """A device may publish a CloudEvent of its own, which the broker forwards with its
    attributes, subject included: without the broker's deviceid enrichment the subject
    proves nothing (issue 17, finding 2)."""
    [result] = decode("inference", sample("routed-inference-base64.json"), now=NOW)
    assert isinstance(result, Rejected) and "no deviceid attribute" in result.reason and "spoofed" in result.reason


def test_a_routed_message_whose_subject_is_not_the_published_topic_is_rejected_as_spoofed() -> None:
    body = enriched(sample("routed-inference-base64.json"), mqtttopic="devices/someone-else/inference")
    [result] = decode("inference", body, now=NOW)
    assert isinstance(result, Rejected) and "not the topic the message was published on" in result.reason
    [ok] = accepted("inference", enriched(sample("routed-inference-base64.json"),
                                          mqtttopic="devices/camera-017/inference"))
    assert ok.device_id == DEVICE
