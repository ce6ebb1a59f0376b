"""The archive keeps what a device sent: its own fields beside ours, its numbers as it
wrote them, and every timestamp RFC 3339 allows within our years (issue 15, findings 8-10).

An archive line is ``{"deviceId", "timestamp", "message", "eventHub"}``: the device
and time the app settled on, the message exactly as sent, and where it sat in Event
Hubs. Lines are read here with the standard library's ``json``, which, unlike orjson,
reads integers of any size exactly, as any reader of the archive should.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from shared.platform.errors import InvalidInput
from shared.platform.timestamps import parse_timestamp
from shared.streams.batch import Origin
from shared.streams.decode import Rejected, decode
from shared.streams.lines import archive_line
from shared.streams.state import coalesce_telemetry
from tests.support.stream_corpus import DEVICE, NOW, accepted, event, inference, rejected, routed, telemetry

ORIGIN = Origin("telemetry", "3", 1042, "8800", datetime(2026, 11, 20, 8, 16, tzinfo=UTC))
WHERE = {"hub": "telemetry", "partitionId": "3", "sequenceNumber": 1042, "offset": "8800",
         "enqueuedTime": "2026-11-20T08:16:00Z"}


def lines(stream: Any, body: bytes) -> list[dict[str, Any]]:
    """The archive lines of ``body``'s messages, read back losslessly."""
    return [json.loads(archive_line(result, ORIGIN)) for result in accepted(stream, body)]


# --- finding 8: the device's fields and ours never share a name --------------------------


def test_a_devices_own_field_named_eventHub_is_kept_and_the_origin_has_its_own_place() -> None:
    payload = telemetry(eventHub={"hub": "the device's", "partitionId": 7})
    [line] = lines("telemetry", routed(payload))
    assert line["message"]["eventHub"] == {"hub": "the device's", "partitionId": 7}
    assert line["eventHub"] == WHERE


def test_the_line_holds_the_message_exactly_as_sent_beside_the_device_and_time_we_settled_on() -> None:
    """The alias ``ts``, the device's offset and its fields named like ours stay as sent;
    ``deviceId`` and ``timestamp`` beside the message are ours (the topic's device, UTC)."""
    payload = {"ts": "2026-11-20T09:15:59.9+01:00", "metrics": {"x": 1}, "deviceId": DEVICE,
               "message": "door opened", "timestamp-note": "local"}
    [line] = lines("telemetry", routed(payload))
    assert line == {"deviceId": DEVICE, "timestamp": "2026-11-20T08:15:59.900000Z", "message": payload,
                    "eventHub": WHERE}


def test_a_message_of_an_array_keeps_its_fields_and_its_position_is_in_the_origin() -> None:
    messages = [telemetry(deviceId="plc-1", position="rack 4"), telemetry(deviceId="plc-2", eventHub=None)]
    found = lines("telemetry", orjson.dumps(messages))
    assert [line["message"] for line in found] == messages
    assert [(line["deviceId"], line["eventHub"]["position"]) for line in found] == [("plc-1", 0), ("plc-2", 1)]


def test_the_statistics_read_a_line_of_the_old_shape_as_one_of_the_new() -> None:
    """A blob written before the message moved under "message" may still be read back
    once, by a retry across the deploy that moved it."""
    from shared.streams.stats import contribution

    message = inference()
    old = {"deviceId": DEVICE, **message}
    new = {"deviceId": DEVICE, "timestamp": message["timestamp"], "message": message}
    assert contribution([old]) == contribution([new]) != {}


# --- finding 9: numbers stay as the device wrote them --------------------------------------

BIG = {"count": 2**64 + 1, "serial": 2**128 - 1, "low": -(2**63) - 1, "ids": [2**64, {"deep": 10**30}],
       "edges": [2**64 - 1, -(2**63)]}
BIG_JSON = (b'{"timestamp":"2026-11-20T08:15:59Z","sequence":7,"metrics":{"count":18446744073709551617,"t":1.5},'
            b'"serial":340282366920938463463374607431768211455,"low":-9223372036854775809,'
            b'"ids":[18446744073709551616,{"deep":1000000000000000000000000000000}],'
            b'"edges":[18446744073709551615,-9223372036854775808]}')


def test_the_big_numbers_of_this_file_say_the_same_in_python_and_in_json() -> None:
    document = json.loads(BIG_JSON)
    assert {key: document[key] for key in BIG if key != "count"} == {key: BIG[key] for key in BIG if key != "count"}
    assert document["metrics"]["count"] == BIG["count"]


def _spliced(document: Any, raw: bytes) -> bytes:
    """``document`` as JSON with ``raw`` where its value ``"RAW"`` is (orjson cannot write big integers)."""
    return orjson.dumps(document).replace(b'"RAW"', raw)


ENVELOPES = {
    "routed, data a JSON value": _spliced(event("RAW"), BIG_JSON),
    "routed, data_base64": orjson.dumps(event(data_base64=base64.b64encode(BIG_JSON).decode())),
    "routed, data a string": orjson.dumps(event(BIG_JSON.decode())),
    "plain": BIG_JSON[:-1] + b',"deviceId":"camera-017"}',
    "array": _spliced([telemetry(deviceId=DEVICE), "RAW"], BIG_JSON[:-1] + b',"deviceId":"camera-017"}'),
}


@pytest.mark.parametrize("body", ENVELOPES.values(), ids=ENVELOPES.keys())
def test_integers_beyond_64_bits_are_archived_as_sent_in_every_envelope(body: bytes) -> None:
    line = lines("telemetry", body)[-1]
    message = {key: value for key, value in line["message"].items() if key != "deviceId"}
    assert message == {"timestamp": "2026-11-20T08:15:59Z", "sequence": 7, "metrics": {"count": 2**64 + 1, "t": 1.5},
                       **{key: BIG[key] for key in BIG if key != "count"}}


PAST_64_BITS, BELOW_64_BITS = str(2**64 + 1).encode(), str(-(2**63) - 1).encode()
ONE_PLACE = {  # one number beyond 64 bits, in one place of a message
    "a metric": ("telemetry", _spliced(telemetry(metrics={"x": 1, "n": "RAW"}), PAST_64_BITS)),
    "a negative metric": ("telemetry", _spliced(telemetry(metrics={"x": 1, "n": "RAW"}), BELOW_64_BITS)),
    "an unknown field, nested": ("telemetry", _spliced(telemetry(x={"y": [1, "RAW"]}), PAST_64_BITS)),
    "latencyMs": ("inference", _spliced(inference(latencyMs="RAW"), PAST_64_BITS)),
    "the model's unknown field": ("inference", _spliced(inference(model={"name": "m", "version": "1", "n": "RAW"}),
                                                        PAST_64_BITS)),
    "a detection's unknown field": ("inference", _spliced(
        inference(detections=[{"label": "l", "confidence": 0.5, "n": "RAW"}]), BELOW_64_BITS)),
    "an unknown field of the result": ("inference", _spliced(inference(n="RAW"), PAST_64_BITS)),
}


@pytest.mark.parametrize(("stream", "payload"), ONE_PLACE.values(), ids=ONE_PLACE.keys())
def test_a_number_beyond_64_bits_is_archived_as_sent_wherever_the_message_holds_it(stream: Any, payload: bytes) -> None:
    [line] = lines(stream, _spliced(event("RAW", stream=stream), payload))
    assert line["message"] == json.loads(payload)


def test_the_models_see_such_a_number_as_the_nearest_double_so_latest_state_and_rules_work_as_before() -> None:
    [result] = accepted("telemetry", ENVELOPES["routed, data a JSON value"])
    assert result.message.metrics["count"] == float(2**64 + 1)  # type: ignore[union-attr]


def test_a_bad_message_of_an_array_is_dead_lettered_with_its_big_integers_as_sent() -> None:
    bad = b'{"deviceId":"plc-1","timestamp":"2026-11-20T08:15:59Z","metrics":{},"sequence":-1,"serial":' \
          + str(2**128 - 1).encode() + b"}"
    results = decode("telemetry", _spliced([telemetry(deviceId="plc-1"), "RAW"], bad), now=NOW)
    letter = results[1]
    assert isinstance(letter, Rejected) and letter.position == 1
    assert json.loads(letter.body)["serial"] == 2**128 - 1


def test_a_bad_message_of_an_array_nested_past_orjsons_254_levels_is_dead_lettered_on_its_own() -> None:
    """orjson writes at most 254 levels, but reads 1024: such an element made the whole
    event an internal error, and its good neighbours were not archived."""
    nested = b"[" * 300 + b"]" * 300
    body = _spliced([telemetry(deviceId="plc-1"), {**telemetry(deviceId="plc-1"), "x": "RAW"}], nested)
    good, bad = decode("telemetry", body, now=NOW)
    assert not isinstance(good, Rejected) and isinstance(bad, Rejected)
    assert "nests more than 32 levels" in bad.reason and json.loads(bad.body)["x"] == json.loads(nested)


def test_a_sequence_beyond_64_bits_is_still_refused() -> None:
    body = _spliced(event("RAW"), b'{"timestamp":"2026-11-20T08:15:59Z","sequence":18446744073709551617,'
                                   b'"metrics":{"x":1}}')
    assert "sequence" in rejected("telemetry", body).reason


# --- finding 10: every RFC 3339 timestamp within our years --------------------------------

LAST_MICROSECOND_OF_2016 = datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2016-12-31T23:59:60Z", "2016-12-31T23:59:60.5Z", "2016-12-31t23:59:60.999z",
                                  "2016-12-31T15:59:60-08:00", "2017-01-01T00:59:60.25+01:00",
                                  "2016-12-31T23:59:60-00:00"])
def test_a_leap_second_is_read_as_the_last_microsecond_before_the_next_second(text: str) -> None:
    """Ordered after every earlier time and before the next day; it stays in its own
    UTC hour and day (statistics, archive folders), and 2099-12-31T23:59:60Z stays in range."""
    assert parse_timestamp(text, field="t") == LAST_MICROSECOND_OF_2016


def test_a_leap_second_may_end_any_month() -> None:
    assert parse_timestamp("2015-06-30T23:59:60Z", field="t") == datetime(2015, 6, 30, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_timestamp("2099-12-31T23:59:60Z", field="t").year == 2099


@pytest.mark.parametrize("text", ["2026-11-20T08:00:60Z", "2016-12-30T23:59:60Z", "2016-12-31T23:58:60Z",
                                  "2016-12-31T23:59:60+01:00"])
def test_second_60_anywhere_but_the_last_minute_of_a_month_in_utc_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="leap second"):
        parse_timestamp(text, field="t")


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-20T08:15:59.1234567891Z", datetime(2026, 11, 20, 8, 15, 59, 123456, tzinfo=UTC)),
    ("2026-11-20T09:15:59.999999999999+01:00", datetime(2026, 11, 20, 8, 15, 59, 999999, tzinfo=UTC)),
    ("2026-11-20T08:15:59." + "0" * 40 + "1Z", datetime(2026, 11, 20, 8, 15, 59, tzinfo=UTC)),
])
def test_any_number_of_fraction_digits_is_read_and_cut_not_rounded_to_the_microsecond(
        text: str, expected: datetime) -> None:
    assert parse_timestamp(text, field="t") == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("2026-11-20T08:15:59", "time zone"), ("20261120T081559Z", "RFC 3339"), ("2026-11-20 08:15:59Z", "RFC 3339"),
    ("2026-11-20T08:15:59,5Z", "RFC 3339"), ("2026-11-20T08:15Z", "RFC 3339"), ("2026-11-20T08:15:59.Z", "RFC 3339"),
    ("2026-11-20T08:15:59+0100", "RFC 3339"), ("2026-W47-5T08:15:59Z", "RFC 3339"),
    ("1969-12-31T23:59:60Z", "between"), ("2100-01-01T00:00:00Z", "between"),
    ("2026-11-20T24:00:00Z", "valid"), ("2016-12-31T23:59:61Z", "valid"), ("2026-11-20T08:15:59+24:00", "valid"),
])
def test_what_rfc_3339_or_our_years_refuse_is_still_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_timestamp(text, field="t")


def test_the_archive_keeps_a_z_leap_second_as_sent_and_gives_one_with_an_offset_in_utc() -> None:
    [z] = lines("telemetry", routed(telemetry(timestamp="2016-12-31T23:59:60.5Z")))
    assert z["timestamp"] == z["message"]["timestamp"] == "2016-12-31T23:59:60.5Z"
    [offset] = lines("telemetry", routed(telemetry(timestamp="2016-12-31T15:59:60.5-08:00")))
    assert offset["timestamp"] == "2016-12-31T23:59:59.999999Z"
    assert offset["message"]["timestamp"] == "2016-12-31T15:59:60.5-08:00"


def test_the_archive_keeps_a_long_fraction_as_sent() -> None:
    [line] = lines("telemetry", routed(telemetry(timestamp="2026-11-20T08:15:59.123456789012Z")))
    assert line["timestamp"] == "2026-11-20T08:15:59.123456789012Z"


def test_latest_state_orders_a_leap_second_after_its_minute_and_before_the_next_day() -> None:
    def newest(*stamps: str) -> tuple[str, Any]:
        bodies = [routed(telemetry(timestamp=stamp, metrics={"v": n})) for n, stamp in enumerate(stamps)]
        return coalesce_telemetry(r for body in reversed(bodies) for r in accepted("telemetry", body))[DEVICE]["v"]

    assert newest("2016-12-31T23:59:59.9Z", "2016-12-31T23:59:60.2Z") == ("2016-12-31T23:59:59.999999Z", 1)
    assert newest("2016-12-31T23:59:60.2Z", "2017-01-01T00:00:00Z") == ("2017-01-01T00:00:00.000000Z", 1)


def test_query_parameters_take_a_leap_second_and_a_long_fraction() -> None:
    from shared.platform.http import query_datetime
    from tests.support.harness import http_request

    request = http_request("GET", "alerts", params={"since": "2016-12-31T23:59:60Z",
                                                    "until": "2017-01-01T00:00:00.1234567891+00:00"})
    assert query_datetime(request, "since") == LAST_MICROSECOND_OF_2016
    assert query_datetime(request, "until") == datetime(2017, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)


def test_life_cycle_times_take_a_leap_second_and_a_long_fraction() -> None:
    from shared.lifecycle.events import parse_lifecycle_event
    from standins.event_factory import created_or_updated, to_function_event

    document = created_or_updated("cam-9", datetime(2017, 1, 1, 0, 0, 1, tzinfo=UTC))
    document["data"] |= {"createdOn": "2016-12-31T23:59:60.1234567Z", "updatedOn": "2017-01-01T00:00:00.1234567891Z"}
    parsed = parse_lifecycle_event(to_function_event(document))
    assert (parsed.created_on, parsed.updated_on) == (LAST_MICROSECOND_OF_2016,
                                                      datetime(2017, 1, 1, 0, 0, 0, 123456, tzinfo=UTC))


# --- end to end: the blob, the latest state and the statistics ----------------------------


@pytest.mark.usefixtures("app_env")
def test_through_inference_ingest_the_blob_holds_the_result_as_sent_and_the_statistics_count_it(run: Any) -> None:
    """A leap second, a latency beyond 64 bits and a device's own eventHub field, together:
    the blob keeps them, the statistics read the leap second's hour and the latency's double."""
    from standins.eventhub_factory import routed_body
    from tests.support.harness import http_request, json_of, user_function
    from tests.support.streams import _blobs, hub, ingest

    log, model = hub("inference"), f"m{uuid.uuid4().hex[:6]}"
    raw = (b'{"timestamp":"2016-12-31T23:59:60.5Z","inferenceId":"i-1","latencyMs":18446744073709551617,'
           b'"model":{"name":"' + model.encode() + b'","version":"1"},"eventHub":"mine",'
           b'"detections":[{"label":"person","confidence":0.5,"serial":340282366920938463463374607431768211455}]}')
    log.publish([routed_body(raw, topic="devices/cam-leap/inference", at=datetime.now(UTC),
                             payload_format="binary")])
    ingest(run, "inference", log.deliver())
    [line] = [json.loads(text) for name, data in run(_blobs("inference")).items() if f"/{log.hub}-" in name
              for text in data.splitlines()]
    assert line["message"] == json.loads(raw)
    assert (line["deviceId"], line["timestamp"], line["eventHub"]["hub"]) == ("cam-leap", "2016-12-31T23:59:60.5Z",
                                                                             log.hub)
    response = run(user_function("get_model_stats")(http_request(
        "GET", f"models/{model}/stats", route_params={"modelName": model},
        params={"since": "2016-12-31T23:00:00Z", "until": "2016-12-31T23:59:60Z"})))
    assert response.status_code == 200, response.get_body()
    [item] = json_of(response)["items"]
    assert (item["hour"], item["count"], item["latencyMsMax"]) == ("2016-12-31T23:00:00Z", 1, float(2**64 + 1))


# --- the same mistake in the command-responses hub ---------------------------------------


@pytest.mark.usefixtures("app_env")
def test_command_answers_of_an_array_are_dead_lettered_as_written_big_numbers_and_deep_nesting_too(run: Any) -> None:
    """The same mistake in the command-responses hub: a bad answer of an array was written
    again by orjson, which rounds integers beyond 64 bits and stops at 254 levels (the
    whole batch then failed)."""
    from shared.platform.storage import data_store
    from shared.platform.storage_names import DEADLETTER_CONTAINER
    from standins.eventhub_factory import Partition
    from standins.invoke import InvocationContext
    from tests.support.harness import user_function

    unknown = {"deviceId": "cam-9", "commandId": "0196c3c2-0000-7000-8000-000000000000", "status": "failed"}
    big = b'{"result":{"serial":' + str(2**128 - 1).encode() + b"}}"
    deep = b'{"result":' + b"[" * 300 + b"]" * 300 + b"}"
    elements = [orjson.dumps(unknown)[:-1] + b"," + extra[1:] for extra in (big, deep)]
    hub = Partition(f"responses-{uuid.uuid4().hex[:6]}", "0")
    hub.publish([b"[" + b",".join(elements) + b"]"])
    run(user_function("command_responses")(hub.deliver(), InvocationContext("command_responses")))

    async def letters() -> list[dict[str, Any]]:
        container = await data_store().container(DEADLETTER_CONTAINER)
        found = [json.loads(await (await container.download_blob(blob.name)).readall())
                 async for blob in container.list_blobs(name_starts_with="command-responses/")]
        return [letter for letter in found if letter["eventHub"]["hub"] == hub.hub]

    bodies = {letter["eventHub"]["position"]: json.loads(letter["body"]) for letter in run(letters())}
    assert bodies == {0: json.loads(elements[0]), 1: json.loads(elements[1])}
