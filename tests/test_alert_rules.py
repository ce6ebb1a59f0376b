"""Stream alert rules: ALERT_RULES parsed strictly, comparisons of one kind only,
labels at or above a confidence, and a cooldown that needs no storage: a storm names
one alert, in any order and however often delivered."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.alerts.rules import (
    DEFAULT_RULES,
    FIELDS,
    MAX_RULES,
    AlertRule,
    bucket_start,
    compare,
    distinct,
    inference_alerts,
    parse_rules,
    rules_from_json,
    telemetry_alerts,
)
from shared.alerts.settings import AlertSettings
from shared.alerts.store import AlertStore
from shared.platform.errors import ConfigurationError
from shared.platform.settings import Rule, SettingsError, load
from shared.platform.storage import data_store
from shared.streams.messages import InferenceMessage, TelemetryMessage
from tests.support.harness import changed_settings, http_request, json_of, user_function

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "camera-017"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # a multiple of every cooldown used below
CANARY = "Zq9canary7Xv"


def z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def telemetry(metrics: dict[str, Any], at: datetime = T0) -> TelemetryMessage:
    return TelemetryMessage.model_validate({"timestamp": z(at), "metrics": metrics})


def inference(detections: list[tuple[str, float]], at: datetime = T0) -> InferenceMessage:
    return InferenceMessage.model_validate({
        "timestamp": z(at), "inferenceId": "inf-1", "model": {"name": "yolo-safety", "version": "3.1"},
        "detections": [{"label": label, "confidence": confidence} for label, confidence in detections]})


def rules(*items: dict[str, Any]) -> tuple[AlertRule, ...]:
    return rules_from_json(json.dumps(list(items)))


def metric_rule(op: str, value: Any, **fields: Any) -> dict[str, Any]:
    return {"name": "r", "stream": "telemetry", "metric": "m", "op": op, "value": value, **fields}


def label_rule(**fields: Any) -> dict[str, Any]:
    return {"name": "fire", "stream": "inference", "label": "fire", **fields}


def fires(rule: dict[str, Any], observed: Any) -> bool:
    return bool(telemetry_alerts(rules(rule), DEVICE, telemetry({"m": observed}), NOW))


def contract_form(rule: AlertRule) -> dict[str, Any]:
    """A rule as ALERT_RULES spells it."""
    fields = {"name": rule.name, "stream": rule.stream, "severity": rule.severity,
              "cooldownSeconds": rule.cooldown_seconds}
    if rule.stream == "telemetry":
        return {**fields, "metric": rule.metric, "op": rule.op, "value": rule.value}
    return {**fields, "label": rule.label, "minConfidence": rule.min_confidence}


# --- comparisons ----------------------------------------------------------------------

# observed 84, 85 and 86 against a threshold of 85
NUMBER_TABLE = {">": (False, False, True), ">=": (False, True, True), "<": (True, False, False),
                "<=": (True, True, False), "==": (False, True, False), "!=": (True, False, True)}


@pytest.mark.parametrize("op", NUMBER_TABLE)
@pytest.mark.parametrize("threshold", [85, 85.0], ids=["int", "float"])
@pytest.mark.parametrize("as_float", [False, True], ids=["int-metric", "float-metric"])
def test_every_op_compares_numbers(op: str, threshold: float, as_float: bool) -> None:
    observed = [84.0, 85.0, 86.0] if as_float else [84, 85, 86]
    assert tuple(fires(metric_rule(op, threshold), x) for x in observed) == NUMBER_TABLE[op]


def test_fractions_compare_exactly() -> None:
    assert fires(metric_rule(">", 85), 85.000001)
    assert not fires(metric_rule(">", 85.5), 85.4999)
    assert fires(metric_rule("<=", -0.5), -1e-3 - 0.5)


@pytest.mark.parametrize("op, value, observed, expected", [
    ("==", True, True, True), ("==", True, False, False), ("!=", True, False, True), ("!=", False, False, False),
    ("==", "open", "open", True), ("==", "open", "Open", False), ("!=", "closed", "open", True),
    ("!=", "closed", "closed", False),
])
def test_booleans_and_strings_compare_for_equality(op: str, value: Any, observed: Any, expected: bool) -> None:
    assert fires(metric_rule(op, value), observed) is expected


@pytest.mark.parametrize("op, value, observed", [
    (">", 10, "20"), ("<", 10, "5"), (">=", 0, True), ("<=", 1, False),  # ordering a string or a boolean
    ("==", 1, True), ("==", True, 1), ("==", 0, False), ("==", "1", 1),  # equality across kinds
    ("!=", "open", 3), ("!=", 3, "open"), ("!=", False, 0),  # not even != across kinds
])
def test_values_of_different_kinds_never_match(op: str, value: Any, observed: Any) -> None:
    assert not fires(metric_rule(op, value), observed)
    assert not compare(observed, op, value)


@pytest.mark.parametrize("op", NUMBER_TABLE)
def test_a_missing_metric_matches_no_op(op: str) -> None:
    message = telemetry({"other": 1})
    assert telemetry_alerts(rules(metric_rule(op, 1)), DEVICE, message, NOW) == []


def test_nan_cannot_reach_a_comparison() -> None:
    with pytest.raises(Rule, match="not valid JSON"):
        rules_from_json('[{"name": "r", "stream": "telemetry", "metric": "m", "op": ">", "value": NaN}]')
    for value in (math.nan, math.inf):
        with pytest.raises(Rule, match="value must be a number, a boolean or a string"):
            parse_rules([metric_rule("!=", value)])
        with pytest.raises(ValidationError):
            telemetry({"m": value})
        assert not compare(value, "!=", 1), "the comparison refuses it too"


def test_a_telemetry_alert_says_what_was_seen() -> None:
    [alert] = telemetry_alerts(rules(metric_rule(">", 85, name="hot", severity="critical")), DEVICE,
                               telemetry({"m": 91.5, "other": 1}, T0 + timedelta(seconds=42)), NOW)
    assert (alert.device_id, alert.rule, alert.severity, alert.stream, alert.value, alert.raised_at) == (
        DEVICE, "hot", "critical", "telemetry", 91.5, NOW)
    assert alert.message == f"device {DEVICE!r}: m is 91.5 (hot: m > 85)"
    assert alert.timestamp == T0, "the bucket's start"


def test_each_matching_rule_raises_its_own_alert() -> None:
    rule_set = rules(metric_rule(">", 80, name="warm"), metric_rule(">", 90, name="hot"),
                     metric_rule("<", 0, name="cold"), label_rule())
    alerts = telemetry_alerts(rule_set, DEVICE, telemetry({"m": 95}), NOW)
    assert [a.rule for a in alerts] == ["warm", "hot"]
    assert len({a.alert_id for a in alerts}) == 2


# --- labels and confidence ----------------------------------------------------------------

@pytest.mark.parametrize("detections, expected", [
    ([("fire", 0.8)], 0.8),  # exactly at minConfidence
    ([("fire", 0.7999)], None),
    ([("smoke", 0.99)], None),
    ([("Fire", 0.99)], None),  # labels are case-sensitive
    ([], None),
    ([("fire", 0.81), ("person", 0.99), ("fire", 0.93), ("fire", 0.5)], 0.93),  # the highest confidence
])
def test_an_inference_rule_fires_on_its_label_at_or_above_the_confidence(
        detections: list[tuple[str, float]], expected: float | None) -> None:
    alerts = inference_alerts(rules(label_rule(minConfidence=0.8)), DEVICE, inference(detections), NOW)
    assert [a.value for a in alerts] == ([] if expected is None else [expected])


def test_without_min_confidence_any_detection_of_the_label_fires() -> None:
    [rule] = rules(label_rule())
    assert rule.min_confidence == 0
    assert [a.value for a in inference_alerts([rule], DEVICE, inference([("fire", 0.0)]), NOW)] == [0.0]


def test_an_inference_alert_names_the_model() -> None:
    [alert] = inference_alerts(rules(label_rule(minConfidence=1)), DEVICE, inference([("fire", 1.0)]), NOW)
    assert alert.stream == "inference" and alert.severity == "warning"
    assert "yolo-safety 3.1" in alert.message and "fire detected with confidence 1.00" in alert.message


def test_rules_of_the_other_stream_are_ignored() -> None:
    rule_set = rules(metric_rule(">", 0), label_rule())
    assert [a.rule for a in telemetry_alerts(rule_set, DEVICE, telemetry({"m": 1}), NOW)] == ["r"]
    assert [a.rule for a in inference_alerts(rule_set, DEVICE, inference([("fire", 1)]), NOW)] == ["fire"]


# --- cooldown buckets ------------------------------------------------------------------

def test_a_storm_in_one_bucket_names_one_alert_whatever_the_order() -> None:
    rule_set = rules(metric_rule(">", 85, cooldownSeconds=600))
    rng = random.Random(11)
    storm = [telemetry({"m": 86 + rng.random() * 10}, T0 + timedelta(microseconds=rng.randrange(600_000_000)))
             for _ in range(1000)]
    first = [a for m in storm for a in telemetry_alerts(rule_set, DEVICE, m, NOW)]
    rng.shuffle(storm)
    again = [a for m in storm for a in telemetry_alerts(rule_set, DEVICE, m, NOW + timedelta(hours=1))]
    assert len(first) == len(again) == 1000
    assert {(a.alert_id, a.timestamp) for a in first + again} == {(first[0].alert_id, T0)}
    assert len(distinct(first + again)) == 1


def test_two_buckets_name_two_alerts_and_the_boundary_belongs_to_the_later() -> None:
    rule_set = rules(metric_rule(">", 85, cooldownSeconds=300))
    moments = [T0 + timedelta(seconds=299, microseconds=999_999), T0 + timedelta(seconds=300), T0]
    alerts = [a for at in moments for a in telemetry_alerts(rule_set, DEVICE, telemetry({"m": 90}, at), NOW)]
    assert [a.timestamp for a in alerts] == [T0, T0 + timedelta(seconds=300), T0]
    assert alerts[0].alert_id == alerts[2].alert_id != alerts[1].alert_id
    assert [a.alert_id for a in distinct(alerts)] == [alerts[0].alert_id, alerts[1].alert_id]


def test_the_cooldown_is_per_device_and_rule() -> None:
    rule_set = rules(metric_rule(">", 0, name="a"), metric_rule(">", 0, name="b"))
    ids = {a.alert_id for device in ("d1", "d2") for a in telemetry_alerts(rule_set, device, telemetry({"m": 1}),
                                                                             NOW)}
    assert len(ids) == 4


def test_an_alert_id_always_comes_with_one_timestamp_even_when_the_cooldown_changes() -> None:
    """The store's row keys hold the timestamp and the id: one id must never get two
    timestamps, or one alert would be stored twice."""
    message = telemetry({"m": 90}, T0 + timedelta(seconds=450))
    seen: dict[str, datetime] = {}
    for cooldown in (60, 300, 600, 900, 3600, 86_400):
        for alert in telemetry_alerts(rules(metric_rule(">", 85, cooldownSeconds=cooldown)), DEVICE, message, NOW):
            assert seen.setdefault(alert.alert_id, alert.timestamp) == alert.timestamp
    assert sorted(seen.values()) == [T0.replace(hour=0), T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=7)], (
        "600, 900 and 3600 s share the bucket that starts at 08:00, and its alert")


@given(moment=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2099, 12, 31),
                           timezones=st.just(UTC)),
       seconds=st.integers(1, 86_400))
def test_a_bucket_is_aligned_on_the_epoch_and_holds_its_moment(moment: datetime, seconds: int) -> None:
    start = bucket_start(moment, seconds)
    assert start <= moment < start + timedelta(seconds=seconds)
    assert (start - datetime(1970, 1, 1, tzinfo=UTC)) % timedelta(seconds=seconds) == timedelta(0)


@pytest.mark.usefixtures("empty_registry")
def test_a_storm_delivered_twice_in_other_orders_is_stored_once(run: Any) -> None:
    rule_set = rules(metric_rule(">", 85))
    storm = [telemetry({"m": 90 + n}, T0 + timedelta(seconds=n)) for n in range(20)]
    store = AlertStore(data_store())
    for delivery in (storm, storm[::-1]):
        alerts = [a for m in delivery for a in telemetry_alerts(rule_set, DEVICE, m, NOW)]
        run(store.add(distinct(alerts)))
    [stored] = run(store.of_device(DEVICE))
    assert (stored.value, stored.timestamp) == (90, T0), "the first delivery's alert is kept"


# --- parsing ALERT_RULES --------------------------------------------------------------------

def bad(raw: str) -> str:
    with pytest.raises(SettingsError) as caught:
        load(AlertSettings, {"ALERT_RULES": raw})
    assert isinstance(caught.value, ConfigurationError)
    assert list(caught.value.problems) == ["ALERT_RULES"]
    assert CANARY not in str(caught.value)
    return str(caught.value)


def one(**fields: Any) -> str:
    return json.dumps([{"name": "ok", "stream": "telemetry", "metric": "m", "op": ">", "value": 1},
                       {k: v for k, v in fields.items() if v is not ...}])


T = {"name": "hot", "stream": "telemetry", "metric": "m", "op": ">", "value": 1}
INF = {"name": "hot", "stream": "inference", "label": "fire"}


@pytest.mark.parametrize("raw, expected", [
    ("{}", "ALERT_RULES must be a JSON list of rules"),
    (f"[{{{CANARY}", "ALERT_RULES must be a JSON list of rules (it is not valid JSON)"),
    (json.dumps([CANARY]), "ALERT_RULES rule at index 0: must be a JSON object"),
    (json.dumps([[]]), "rule at index 0: must be a JSON object"),
    (one(**{**T, "name": ...}), "rule at index 1: name must be 1 to 64 letters"),
    (one(**{**T, "name": f"{CANARY} x"}), "rule at index 1: name must be 1 to 64 letters"),
    (one(**{**T, "name": "a" * 65}), "rule at index 1: name must be 1 to 64"),
    (one(**{**T, "name": "flapping"}), "rule at index 1 (flapping): name flapping is reserved for life cycle"),
    (one(**{**T, "name": "ok"}), "rule at index 1 (ok): name is used by an earlier rule"),
    (one(**T, treshold=5), "rule at index 1 (hot): has unknown field treshold (allowed: name, stream"),
    (one(**T, Severity="info", x=1), "has unknown fields Severity, x"),
    (one(**{**T, "stream": ...}), "rule at index 1 (hot): stream must be one of telemetry, inference"),
    (one(**{**T, "stream": CANARY}), "stream must be one of telemetry, inference"),
    (one(**{**T, "metric": ...}), "rule at index 1 (hot): metric must be a string of 1 to 256 characters"),
    (one(**{**T, "metric": ""}), "metric must be a string of 1 to 256"),
    (one(**{**T, "op": ...}), "op must be one of >, >=, <, <=, ==, !="),
    (one(**{**T, "op": "=>"}), "rule at index 1 (hot): op must be one of >, >=, <, <=, ==, !="),
    (one(**{**T, "value": ...}), "value must be a number, a boolean or a string"),
    (one(**{**T, "value": None}), "value must be a number, a boolean or a string"),
    (one(**{**T, "value": [1]}), "value must be a number, a boolean or a string"),
    (one(**{**T, "op": "==", "value": CANARY * 30}), "value must be at most 256 characters"),
    (one(**{**T, "value": CANARY}), "rule at index 1 (hot): op > needs a number value"),
    (one(**{**T, "op": "<=", "value": True}), "op <= needs a number value"),
    (one(**T, label="fire"), "rule at index 1 (hot): label applies to inference rules only"),
    (one(**T, minConfidence=0.5), "minConfidence applies to inference rules only"),
    (one(**{**INF, "label": ...}), "rule at index 1 (hot): label must be a string of 1 to 256"),
    (one(**{**INF, "label": 7}), "label must be a string"),
    (one(**INF, metric="m"), "rule at index 1 (hot): metric applies to telemetry rules only"),
    (one(**INF, op=">"), "op applies to telemetry rules only"),
    (one(**INF, minConfidence=1.5), "rule at index 1 (hot): minConfidence must be a number from 0 to 1"),
    (one(**INF, minConfidence=-0.1), "minConfidence must be a number from 0 to 1"),
    (one(**INF, minConfidence="0.9"), "minConfidence must be a number from 0 to 1"),
    (one(**INF, minConfidence=True), "minConfidence must be a number from 0 to 1"),
    (one(**T, severity="fatal"), "rule at index 1 (hot): severity must be one of info, warning, critical"),
    (one(**T, severity=None), "severity must be one of info, warning, critical"),
    (one(**T, cooldownSeconds=0), "rule at index 1 (hot): cooldownSeconds must be a whole number from 1 to 86400"),
    (one(**T, cooldownSeconds=86_401), "cooldownSeconds must be a whole number from 1 to 86400"),
    (one(**T, cooldownSeconds=1.5), "cooldownSeconds must be a whole number"),
    (one(**T, cooldownSeconds="60"), "cooldownSeconds must be a whole number"),
    (one(**T, cooldownSeconds=True), "cooldownSeconds must be a whole number"),
    (json.dumps([T] * (MAX_RULES + 1)), f"ALERT_RULES must hold at most {MAX_RULES} rules"),
], ids=lambda v: v[:60] if isinstance(v, str) else None)
def test_an_invalid_rule_list_is_a_configuration_error_naming_the_rule_and_field(raw: str, expected: str) -> None:
    assert expected in bad(raw)


def test_every_bad_rule_is_named_up_to_three() -> None:
    items = [{"name": f"r{n}", "stream": "telemetry"} for n in range(5)]
    message = bad(json.dumps(items))
    assert "rule at index 0 (r0): metric" in message and "rule at index 2 (r2)" in message
    assert "rule at index 3" not in message and message.endswith("; and 2 more")


def test_the_defaults_are_valid_rules_and_apply_when_alert_rules_is_unset() -> None:
    assert load(AlertSettings, {}).rules == DEFAULT_RULES
    assert rules_from_json(json.dumps([contract_form(r) for r in DEFAULT_RULES])) == DEFAULT_RULES
    assert {r.stream for r in DEFAULT_RULES} == {"telemetry", "inference"}
    hot = telemetry_alerts(DEFAULT_RULES, DEVICE, telemetry({"cpuTemp": 91.0, "battery": 50}), NOW)
    flat = telemetry_alerts(DEFAULT_RULES, DEVICE, telemetry({"cpuTemp": 40.0, "battery": 5}), NOW)
    fire = inference_alerts(DEFAULT_RULES, DEVICE, inference([("fire", 0.85), ("smoke", 0.2)]), NOW)
    assert [a.rule for a in hot + flat + fire] == ["cpuTempHigh", "batteryLow", "fireDetected"]
    assert telemetry_alerts(DEFAULT_RULES, DEVICE, telemetry({"fps": 30}), NOW) == [], (
        "a device without those metrics raises nothing")


def test_an_empty_list_turns_stream_alerts_off_and_omitted_fields_take_their_defaults() -> None:
    assert load(AlertSettings, {"ALERT_RULES": "[]"}).rules == ()
    [rule] = load(AlertSettings, {"ALERT_RULES": json.dumps([T])}).rules
    assert (rule.severity, rule.cooldown_seconds, rule.value) == ("warning", 300, 1)


def test_the_fields_are_the_contract_s() -> None:
    assert set(FIELDS) == {"name", "stream", "metric", "op", "value", "label", "minConfidence", "severity",
                           "cooldownSeconds"}


# --- through health, as the worker calls it --------------------------------------------------

@pytest.mark.usefixtures("app_env")
def test_health_names_an_invalid_alert_rules(run: Any, caplog: pytest.LogCaptureFixture) -> None:
    health = user_function("health")
    with changed_settings(run, {"ALERT_RULES": json.dumps([{**T, "op": CANARY}])}):
        response = run(health(http_request("GET", "health")))
        assert response.status_code == 503
        assert json_of(response)["checks"]["settings"] == "invalid: ALERT_RULES"
        assert any("ALERT_RULES rule at index 0 (hot): op must be one of" in r.getMessage() for r in caplog.records)
        assert all(CANARY not in r.getMessage() for r in caplog.records)
    with changed_settings(run, {"ALERT_RULES": json.dumps([T, INF | {"name": "fire"}])}):
        assert json_of(run(health(http_request("GET", "health"))))["checks"]["settings"] == "ok"


def test_validating_alert_rules_in_health_imports_no_pydantic() -> None:
    script = ("import sys, shared.meta.health as h; print(h.settings_check()); "
              "print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'azure.eventhub'))))")
    env = {"ALERT_RULES": json.dumps([T]), "DataStorage": "UseDevelopmentStorage=true",
           "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.split("\n")[:2] == ["ok", "[]"]
