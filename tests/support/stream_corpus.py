"""The corpus of routed messages (valid, hostile and malformed bodies, each with the
outcome it must have) and the builders of their bodies, shared by the decoding, stream
and archive tests."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.streams.decode import Accepted, Rejected, decode
from shared.streams.envelopes import Stream
from shared.streams.limits import DEFAULT_LIMITS, StreamLimits

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DEVICE = "camera-017"


def telemetry(**fields: Any) -> dict[str, Any]:
    return {"timestamp": "2026-11-20T08:15:59.900Z", "sequence": 7,
            "metrics": {"cpuTemp": 61.5, "fps": 30, "door": "closed", "alarm": False},
            "tags": {"firmware": "4.2.1"}, **fields}


def inference(**fields: Any) -> dict[str, Any]:
    return {"timestamp": "2026-11-20T08:16:01Z", "inferenceId": "inf-001",
            "model": {"name": "yolo-safety", "version": "3.1"}, "latencyMs": 18.4,
            "detections": [{"label": "helmet", "confidence": 0.94, "bbox": [0.12, 0.08, 0.2, 0.31]}], **fields}


def event(payload: Any = None, *, stream: str = "telemetry", device: str = DEVICE, **attributes: Any) -> dict[str, Any]:
    """A CloudEvent as the Event Grid MQTT broker routes a device's publish."""
    document: dict[str, Any] = {
        "specversion": "1.0", "id": "3e2d1c0b-9a8f-4e7d-b6c5-a4b3c2d1e0f9", "time": "2026-11-20T08:16:00.5Z",
        "type": "MQTT.EventPublished", "source": "evgns-edge", "subject": f"devices/{device}/{stream}",
        "datacontenttype": "application/json", "deviceid": device,
    }
    if payload is not None:
        document["data"] = payload
    document.update(attributes)
    return {key: value for key, value in document.items() if value is not None}


def routed(payload: Any = None, **kwargs: Any) -> bytes:
    return orjson.dumps(event(telemetry() if payload is None else payload, **kwargs))


def accepted(stream: Stream, body: bytes, limits: StreamLimits = DEFAULT_LIMITS) -> list[Accepted]:
    results = decode(stream, body, limits, now=NOW)
    assert all(isinstance(r, Accepted) for r in results), results
    return [r for r in results if isinstance(r, Accepted)]


def rejected(stream: Stream, body: bytes, limits: StreamLimits = DEFAULT_LIMITS) -> Rejected:
    results = decode(stream, body, limits, now=NOW)
    assert len(results) == 1 and isinstance(results[0], Rejected), results
    return results[0]

GOOD = routed()
DEEP = b'{"deviceId":"d","timestamp":"2026-11-20T08:00:00Z","metrics":{"a":1},"x":' + b"[" * 5000 + b"]" * 5000 + b"}"


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


EXTRA_DEEP = orjson.dumps(telemetry(deviceId="d", x=nested(34)))
PLAIN_NAN = b'{"deviceId":"d","timestamp":"2026-11-20T08:00:00Z","metrics":{"t":NaN}}'


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CORPUS: list[tuple[str, Stream, bytes, str]] = [
    ("empty body", "telemetry", b"", "body is empty"),
    ("whitespace body", "telemetry", b" \r\n\t", "body is empty"),
    ("broken JSON", "telemetry", b'{"deviceId": "d", "ts": ', "not valid JSON"),
    ("truncated CloudEvent", "telemetry", GOOD[: len(GOOD) // 2], "not valid JSON"),
    ("trailing garbage", "telemetry", GOOD + b"}", "not valid JSON"),
    ("null body", "telemetry", b"null", "body is null"),
    ("number body", "telemetry", b"42", "body is a number"),
    ("string body", "telemetry", b'"hello"', "body is a string"),
    ("boolean body", "telemetry", b"true", "body is a boolean"),
    ("NaN literal", "telemetry", PLAIN_NAN, "holds NaN or Infinity at character 66"),
    ("Infinity literal", "telemetry", PLAIN_NAN.replace(b"NaN", b"Infinity"), "holds NaN or Infinity"),
    ("-Infinity literal", "telemetry", PLAIN_NAN.replace(b"NaN", b"-Infinity"), "holds NaN or Infinity"),
    ("1e999", "telemetry", PLAIN_NAN.replace(b"NaN", b"1e999"), "beyond the range of a double"),
    ("-1e999 in a routed event", "telemetry", GOOD.replace(b"61.5", b"-1e999"), "beyond the range of a double"),
    ("huge body", "telemetry", routed(telemetry(blob="x" * 300_000)), "more than 262144"),
    ("20 000 metrics", "telemetry", routed(telemetry(metrics={f"m{i}": 1 for i in range(20_000)})),
     "metrics: Dictionary should have at most 500 items"),
    ("nesting 5 000 deep", "telemetry", DEEP, "more than 1024 levels deep"),
    ("extra field nested 34 deep", "telemetry", EXTRA_DEEP, "x nests more than 32 levels deep"),
    ("invalid UTF-8", "telemetry", GOOD.replace(b"closed", b"clos\xff\xfe"), "not valid UTF-8"),
    ("lone surrogate escape", "telemetry", GOOD.replace(b"closed", b"\\ud800"), "lone UTF-16 surrogate"),
    ("UTF-8 BOM", "telemetry", b"\xef\xbb\xbf" + GOOD, "byte order mark"),
    ("UTF-16 body", "telemetry", GOOD.decode().encode("utf-16"), "not valid"),
    ("wrong content type", "telemetry", routed(datacontenttype="image/png"), "datacontenttype 'image/png'"),
    ("content type not a string", "telemetry", routed(datacontenttype=["application/json"]),
     "datacontenttype must be a string"),
    ("CloudEvent without data", "telemetry", orjson.dumps(event()), "no data and no data_base64"),
    ("bad base64", "inference", orjson.dumps(event(stream="inference", data_base64="not base64!")),
     "not valid base64"),
    ("base64 of no JSON", "inference", orjson.dumps(event(stream="inference", data_base64=b64(b"\x00\x01"))),
     "data_base64) is not valid JSON"),
    ("base64 not a string", "inference", orjson.dumps(event(stream="inference", data_base64=12)),
     "data_base64 must be a string"),
    ("data and data_base64", "telemetry", routed(data_base64=b64(orjson.dumps(telemetry()))),
     "both data and data_base64"),
    ("data string without JSON", "telemetry", routed("temperature=61.5"), "data string is not valid JSON"),
    ("data a number", "telemetry", routed(61.5), "telemetry message is a number"),
    ("spoofed payload deviceId", "telemetry", routed(telemetry(deviceId="camera-018")), "spoofed"),
    ("spoofed enrichment", "telemetry", routed(deviceid="camera-018"), "deviceid does not match"),
    ("inference topic on the telemetry stream", "telemetry", routed(inference(), stream="inference"),
     "arrived on the telemetry stream"),
    ("not a devices topic", "telemetry", routed(subject="factory/line2/telemetry"),
     "not a devices/{deviceId}/telemetry topic"),
    ("no subject", "telemetry", routed(subject=None), "subject (the MQTT topic) must be a string"),
    ("device id in topic too long", "telemetry", routed(device="d" * 129), "longer than 128 characters"),
    ("empty device id in topic", "telemetry", routed(device="", deviceid=None), "non-empty"),
    ("device-built CloudEvent", "telemetry", routed(type="com.example.reading"), "is not MQTT.EventPublished"),
    ("CloudEvents 0.3", "telemetry", routed(specversion="0.3"), "specversion"),
    ("non-string tag", "telemetry", routed(telemetry(tags={"site": 3})), "tags.site: Input should be a valid string"),
    ("tags as a list", "telemetry", routed(telemetry(tags=["a"])), "tags: Input should be a valid dictionary"),
    ("metrics missing", "telemetry", routed({"timestamp": "2026-11-20T08:00:00Z"}), "metrics: Field required"),
    ("metric value an object", "telemetry", routed(telemetry(metrics={"cpu": {"v": 1}})), "metrics.cpu: a metric"),
    ("metric value null", "telemetry", routed(telemetry(metrics={"cpu": None})), "metrics.cpu: a metric"),
    ("metric string too long", "telemetry", routed(telemetry(metrics={"s": "x" * 1025})), "at most 1024 characters"),
    ("metric name too long", "telemetry", routed(telemetry(metrics={"k" * 129: 1})),
     "... (the name): String should have at most 128 characters"),
    ("number as a string", "telemetry", routed(telemetry(metrics={"cpu": 1}, sequence="5")),
     "sequence: Input should be a valid integer"),
    ("sequence a boolean", "telemetry", routed(telemetry(sequence=True)), "sequence: Input should be a valid integer"),
    ("negative sequence", "telemetry", routed(telemetry(sequence=-1)), "sequence"),
    ("timestamp without zone", "telemetry", routed(telemetry(timestamp="2026-11-20T08:00:00")), "time zone"),
    ("timestamp a number", "telemetry", routed(telemetry(timestamp=1763626559)), "RFC 3339"),
    ("timestamp far in the future", "telemetry", routed(telemetry(timestamp="2027-01-01T00:00:00Z")), "clock skew"),
    ("timestamp and ts", "telemetry", routed(telemetry(ts="2026-11-20T08:00:00Z")), "both timestamp and ts"),
    ("plain message without deviceId", "telemetry", orjson.dumps(telemetry()), "deviceId is required"),
    ("empty deviceId", "telemetry", orjson.dumps(telemetry(deviceId="")), "deviceId"),
    ("empty array", "telemetry", b"[]", "empty JSON array"),
    ("array of 1 001", "telemetry", orjson.dumps([telemetry(deviceId="d")] * 1001), "more than 1000"),
    ("array holding a number", "telemetry", orjson.dumps([telemetry(deviceId="d"), 5]), "message 1: it is a number"),
    ("nested arrays", "telemetry", orjson.dumps([[telemetry(deviceId="d")]]), "message 0: it is an array"),
    ("confidence above 1", "inference",
     routed(inference(detections=[{"label": "x", "confidence": 1.5}]), stream="inference"),
     "detections[0].confidence: Input should be less than or equal to 1"),
    ("bbox of three numbers", "inference",
     routed(inference(detections=[{"label": "x", "confidence": 0.5, "bbox": [0, 0, 1]}]), stream="inference"),
     "detections[0].bbox"),
    ("bbox below 0", "inference",
     routed(inference(detections=[{"label": "x", "confidence": 0.5, "bbox": [-0.1, 0, 1, 1]}]), stream="inference"),
     "detections[0].bbox[0]: Input should be greater than or equal to 0"),
    ("negative latency", "inference", routed(inference(latencyMs=-1), stream="inference"), "latencyMs"),
    ("model name with a slash", "inference",
     routed(inference(model={"name": "yolo/v8", "version": "1"}), stream="inference"), "model.name"),
    ("501 detections", "inference",
     routed(inference(detections=[{"label": "x", "confidence": 0.5}] * 501), stream="inference"),
     "detections: List should have at most 500 items"),
    ("inferenceId missing", "inference",
     routed({k: v for k, v in inference().items() if k != "inferenceId"}, stream="inference"),
     "inferenceId: Field required"),
    ("inferenceId null", "inference", routed(inference(inferenceId=None), stream="inference"),
     "inferenceId: Input should be a valid string"),
    ("label not a string", "inference",
     routed(inference(detections=[{"label": 7, "confidence": 0.5}]), stream="inference"), "detections[0].label"),
]
