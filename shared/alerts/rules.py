"""Stream alert rules (``ALERT_RULES``): what a rule is, the defaults, and which
alerts a telemetry or inference message raises. Pure and deterministic.

A rule is ``{"name", "stream": "telemetry"|"inference", "metric"?, "op"?, "value"?,
"label"?, "minConfidence"?, "severity"?, "cooldownSeconds"?}``:

* a **telemetry** rule needs ``metric``, ``op`` (``> >= < <= == !=``) and ``value``
  (a number, a boolean or a string) and matches when ``metrics[metric] op value``.
  A comparison holds only between values of one kind (numbers, booleans, strings):
  a missing metric, or a metric of another kind than ``value``, matches no rule,
  not even ``!=``; ``> >= < <=`` need a number. Equality is exact.
* an **inference** rule needs ``label`` and matches when a detection has exactly
  that label (case-sensitive) with a confidence at or above ``minConfidence``
  (0 to 1; without it, any detection of the label).
* ``severity`` is ``info``, ``warning`` (default) or ``critical``;
  ``cooldownSeconds`` is 1 to 86 400 (default 300).

**Cooldown without reading storage.** Time is cut into buckets of
``cooldownSeconds`` aligned on the Unix epoch; a device raises at most one alert per
rule and bucket. The alert's id is derived from (device, stream, rule name, bucket
start) and its ``timestamp`` is the bucket start, so every message of a storm, in
any order and however often delivered, names the same alert, and the alerts store
(whose row keys are the timestamp and the id) keeps the first one written. What may
vary between deliveries is only the content of that first alert: ``value`` and
``message`` describe the message that raised it (the metric's reading, or the
highest confidence of the label in that message), and ``raisedAt`` is when it was
raised. A burst that straddles a bucket boundary raises one alert in each bucket.

The rules are parsed here with the standard library rather than pydantic: the
settings layer validates ``ALERT_RULES`` (``health`` does too, on a cold worker),
and importing pydantic and the alert model costs about 100 ms. The alert model
itself is imported when the first alert is built.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from shared.platform.keys import stable_id
from shared.platform.settings import Rule

if TYPE_CHECKING:
    from shared.alerts.models import Alert, Severity

Stream = Literal["telemetry", "inference"]
Op = Literal[">", ">=", "<", "<=", "==", "!="]
Scalar = bool | int | float | str

SEVERITIES = ("info", "warning", "critical")
OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}
ORDERING_OPS = frozenset({">", ">=", "<", "<="})
DEFAULT_SEVERITY: Severity = "warning"
DEFAULT_COOLDOWN_SECONDS = 300
MAX_COOLDOWN_SECONDS = 86_400
MAX_RULES = 100
MAX_TEXT = 256  # metric, label and string values
# Names key alert ids and the alerts' ``rule`` column: short, and needing no quoting.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# The life cycle's rules (``shared.lifecycle.alerts``); it reads its alerts back by rule name.
RESERVED_NAMES = frozenset({"disconnectionReason", "flapping"})
FIELDS = ("name", "stream", "metric", "op", "value", "label", "minConfidence", "severity", "cooldownSeconds")
_ONLY = {"telemetry": ("metric", "op", "value"), "inference": ("label", "minConfidence")}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    stream: Stream
    severity: Severity = DEFAULT_SEVERITY
    cooldown_seconds: int = DEFAULT_COOLDOWN_SECONDS
    metric: str | None = None
    op: Op | None = None
    value: Scalar | None = None
    label: str | None = None
    min_confidence: float = 0.0


# Used when ALERT_RULES is unset (``ALERT_RULES=[]`` turns stream alerts off). Each
# names a failure an edge-AI fleet cannot wait for, and matches nothing on a device
# that does not report its metric or label:
# * cpuTemp (degrees Celsius) above 85: edge SoCs start throttling around 80-85, so
#   inference slows down and frames get dropped;
# * battery (percent) below 10: the device goes dark soon;
# * a fire or smoke detection at 0.8 or more: the safety events a vision fleet is
#   deployed for, at a confidence that keeps single-frame noise out.
DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule(name="cpuTempHigh", stream="telemetry", metric="cpuTemp", op=">", value=85, severity="warning",
              cooldown_seconds=900),
    AlertRule(name="batteryLow", stream="telemetry", metric="battery", op="<", value=10, severity="critical",
              cooldown_seconds=1800),
    AlertRule(name="fireDetected", stream="inference", label="fire", min_confidence=0.8, severity="critical"),
    AlertRule(name="smokeDetected", stream="inference", label="smoke", min_confidence=0.8, severity="critical"),
)


# --- parsing ALERT_RULES ------------------------------------------------------------


class _Bad(ValueError):
    """One field of one rule breaks its rule (the text follows the field's name)."""


def _kind(value: object) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _text(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT:
        raise _Bad(f"{key} must be a string of 1 to {MAX_TEXT} characters")
    return value


def _number(item: Mapping[str, Any], key: str, low: float, high: float, whole: bool, default: Any) -> Any:
    if key not in item:
        return default
    value = item[key]
    valid = isinstance(value, int) if whole else _kind(value) == "number"
    if isinstance(value, bool) or not valid or not low <= value <= high:
        raise _Bad(f"{key} must be {'a whole number' if whole else 'a number'} from {low:g} to {high:g}")
    return value


def _choice(item: Mapping[str, Any], key: str, allowed: Sequence[str], default: str | None) -> Any:
    if key not in item and default is not None:
        return default
    if item.get(key) not in allowed:
        raise _Bad(f"{key} must be one of {', '.join(allowed)}")
    return item[key]


def _rule(item: Mapping[str, Any]) -> AlertRule:
    unknown = sorted(key[:32] for key in item if key not in FIELDS)  # a typo must not pass unnoticed
    if unknown:
        raise _Bad(f"has unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown[:5])}"
                   f"{' ...' if len(unknown) > 5 else ''} (allowed: {', '.join(FIELDS)})")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise _Bad("name must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if name in RESERVED_NAMES:
        raise _Bad(f"name {name} is reserved for life cycle alerts")
    stream = _choice(item, "stream", get_args(Stream), None)
    misplaced = [key for key in _ONLY["inference" if stream == "telemetry" else "telemetry"] if key in item]
    if misplaced:
        raise _Bad(f"{misplaced[0]} applies to {'inference' if stream == 'telemetry' else 'telemetry'} rules only")
    common: dict[str, Any] = {
        "name": name, "stream": stream,
        "severity": _choice(item, "severity", SEVERITIES, DEFAULT_SEVERITY),
        "cooldown_seconds": _number(item, "cooldownSeconds", 1, MAX_COOLDOWN_SECONDS, True,
                                    DEFAULT_COOLDOWN_SECONDS),
    }
    if stream == "inference":
        return AlertRule(**common, label=_text(item, "label"),
                         min_confidence=float(_number(item, "minConfidence", 0, 1, False, 0.0)))
    metric = _text(item, "metric")
    op = _choice(item, "op", tuple(OPS), None)
    if "value" not in item or _kind(item["value"]) is None:
        raise _Bad("value must be a number, a boolean or a string")
    value = item["value"]
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise _Bad(f"value must be at most {MAX_TEXT} characters")
    if op in ORDERING_OPS and _kind(value) != "number":
        raise _Bad(f"op {op} needs a number value")
    return AlertRule(**common, metric=metric, op=op, value=value)


def parse_rules(items: object) -> tuple[AlertRule, ...]:
    """The rules of a decoded ``ALERT_RULES``; :class:`Rule` names each bad rule by its
    index (and name, when valid) and the field it gets wrong, never its value."""
    if not isinstance(items, list):
        raise Rule("must be a JSON list of rules")
    if len(items) > MAX_RULES:
        raise Rule(f"must hold at most {MAX_RULES} rules")
    rules: list[AlertRule] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        where = f"rule at index {index}" + (f" ({name})" if isinstance(name, str) and NAME_PATTERN.fullmatch(name)
                                            else "")
        try:
            if not isinstance(item, dict):
                raise _Bad("must be a JSON object")
            rule = _rule(item)
            if rule.name in seen:
                raise _Bad("name is used by an earlier rule (names must be unique)")
        except _Bad as bad:
            problems.append(f"{where}: {bad}")
            continue
        seen.add(rule.name)
        rules.append(rule)
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise Rule("; ".join(problems[:3]) + more)
    return tuple(rules)


def rules_from_json(raw: str) -> tuple[AlertRule, ...]:
    """``ALERT_RULES``' parser: JSON text in, rules out (see :func:`parse_rules`)."""
    import orjson

    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Rule("must be a JSON list of rules (it is not valid JSON)") from None
    return parse_rules(items)


# --- evaluation ---------------------------------------------------------------------


class TelemetryLike(Protocol):
    """What a rule reads of a telemetry message (``shared.streams.messages.TelemetryMessage``)."""

    @property
    def timestamp(self) -> datetime: ...
    @property
    def metrics(self) -> Mapping[str, Scalar]: ...


class DetectionLike(Protocol):
    @property
    def label(self) -> str: ...
    @property
    def confidence(self) -> float: ...


class ModelLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...


class InferenceLike(Protocol):
    """What a rule reads of an inference message (``shared.streams.messages.InferenceMessage``)."""

    @property
    def timestamp(self) -> datetime: ...
    @property
    def model(self) -> ModelLike: ...
    @property
    def detections(self) -> Sequence[DetectionLike]: ...


def bucket_start(moment: datetime, seconds: int) -> datetime:
    """The start of the epoch-aligned bucket of ``seconds`` that holds ``moment`` (exact:
    timedelta arithmetic, no floats)."""
    width = timedelta(seconds=seconds)
    return _EPOCH + (moment - _EPOCH) // width * width


def compare(observed: object, op: str, threshold: Scalar) -> bool:
    """``observed op threshold`` when both are of one kind (numbers, booleans or
    strings) and ``op`` applies to that kind; otherwise no match."""
    kind = _kind(observed)
    if kind is None or kind != _kind(threshold) or (op in ORDERING_OPS and kind != "number"):
        return False
    return OPS[op](observed, threshold)


def _show(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _alert(rule: AlertRule, device_id: str, moment: datetime, value: Scalar, message: str, now: datetime) -> Alert:
    from shared.alerts.models import Alert

    start = bucket_start(moment, rule.cooldown_seconds)
    return Alert(alert_id=stable_id(device_id, rule.stream, rule.name, start.isoformat()), device_id=device_id,
                 rule=rule.name, severity=rule.severity, stream=rule.stream, message=message, value=value,
                 timestamp=start, raised_at=now)


def telemetry_alerts(rules: Iterable[AlertRule], device_id: str, message: TelemetryLike,
                     now: datetime) -> list[Alert]:
    """The alerts that ``message`` raises: one per telemetry rule it matches."""
    alerts = []
    for rule in rules:
        if rule.stream != "telemetry" or rule.metric is None or rule.op is None or rule.value is None:
            continue
        observed = message.metrics.get(rule.metric)
        if observed is not None and compare(observed, rule.op, rule.value):
            text = (f"device {device_id!r}: {rule.metric} is {_show(observed)} "
                    f"({rule.name}: {rule.metric} {rule.op} {_show(rule.value)})")
            alerts.append(_alert(rule, device_id, message.timestamp, observed, text, now))
    return alerts


def inference_alerts(rules: Iterable[AlertRule], device_id: str, message: InferenceLike,
                     now: datetime) -> list[Alert]:
    """The alerts that ``message`` raises: one per inference rule whose label it
    detects confidently enough; ``value`` is the label's highest confidence."""
    alerts = []
    for rule in rules:
        if rule.stream != "inference":
            continue
        confidence = max((d.confidence for d in message.detections
                          if d.label == rule.label and d.confidence >= rule.min_confidence), default=None)
        if confidence is not None:
            text = (f"device {device_id!r}: {rule.label} detected with confidence {confidence:.2f} by model "
                    f"{message.model.name} {message.model.version} ({rule.name}: at least {rule.min_confidence:g})")
            alerts.append(_alert(rule, device_id, message.timestamp, confidence, text, now))
    return alerts


def distinct(alerts: Iterable[Alert]) -> list[Alert]:
    """``alerts`` without repeated ids, the first of each kept (a storm in one batch
    names one alert many times; store and forward it once)."""
    first: dict[str, Alert] = {}
    for alert in alerts:
        first.setdefault(alert.alert_id, alert)
    return list(first.values())
