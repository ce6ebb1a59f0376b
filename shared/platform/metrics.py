"""The figures the app emits for its operators (docs/monitoring.md): OpenTelemetry
metrics, which the Azure Monitor exporter sends to Application Insights'
``customMetrics`` (name, value, ``customDimensions``), where the workbook and the
alert rules in ``infra/`` read them.

Recorded once per batch, never per message: inside :func:`batch` a record only adds
to a tally (a dict update, well under a microsecond), and the tally is emitted when
the batch succeeds, one data point per metric and dimensions (a failed attempt
emits nothing: its retry records what it does). A record outside a batch (an HTTP
request, a life cycle event: one thing each) is emitted at once.

The exporter is configured at the first emission (:mod:`shared.platform.metrics_export`,
about 100 ms of imports once per process, which no HTTP read pays); with nothing
configured the API's instruments do nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)
_failed: list[bool] = []


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Literal["counter", "histogram"]
    unit: str
    dimensions: frozenset[str]
    description: str


def _metric(name: str, kind: Literal["counter", "histogram"], unit: str, dimensions: str, description: str) -> Metric:
    return Metric(name, kind, unit, frozenset(dimensions.split()), description)


# Dimensions: stream is telemetry, inference, command-responses or lifecycle; partition an
# Event Hubs partition id (at most 32 per hub; empty for life cycle events, which Event
# Grid delivers one by one); reason a dead letter's class (reason_class).
ARCHIVED = _metric("edge.stream.archived", "counter", "{message}", "stream partition",
                   "messages written to the archive (once each: a redelivery adds nothing)")
REDELIVERED = _metric("edge.stream.redelivered", "counter", "{message}", "stream partition",
                      "messages a redelivery brought again, which the archive already held (skipped)")
DEAD_LETTERED = _metric("edge.stream.dead_lettered", "counter", "{message}", "stream partition reason",
                        "messages or events dead-lettered, by reason class")
LAG = _metric("edge.stream.lag", "histogram", "s", "stream partition",
              "now minus the newest enqueued time of a batch: how far behind the function reads")
RETRIED = _metric("edge.batch.retried", "counter", "{batch}", "stream",
                  "invocations that were a retry of a failed batch (the function's retry policy)")
LAST_RETRY = _metric("edge.batch.last_retry", "counter", "{event}", "stream",
                     "events the last retry of a failing batch sent to dead letters whole")
COMMANDS_SENT = _metric("edge.command.sent", "counter", "{command}", "outcome",
                        "new commands: outcome published (the device was online), queued (it was not) or "
                        "failed (the broker refused it)")
DELIVERED_ON_CONNECT = _metric("edge.command.delivered_on_connect", "counter", "{command}", "",
                               "queued commands published when their device connected")
COMPLETED = _metric("edge.command.completed", "counter", "{command}", "status",
                    "commands that reached a final status: succeeded, failed, rejected, expired or cancelled")
ANSWER_TIME = _metric("edge.command.answer_time", "histogram", "s", "status",
                      "from a command's creation to its device's answer")
LIFECYCLE = _metric("edge.lifecycle.events", "counter", "{event}", "kind",
                    "client life cycle events applied to the registry: connected, disconnected, "
                    "createdOrUpdated, deleted")
ALERTS = _metric("edge.alerts.raised", "counter", "{alert}", "rule",
                 "alerts raised (new ones only), by rule: the telemetry and inference rules, "
                 "unexpected-disconnect refusals and flapping")
CATALOGUE = (ARCHIVED, REDELIVERED, DEAD_LETTERED, LAG, RETRIED, LAST_RETRY, COMMANDS_SENT, DELIVERED_ON_CONNECT,
             COMPLETED, ANSWER_TIME, LIFECYCLE, ALERTS)

_Key = tuple[Metric, tuple[tuple[str, str], ...]]


@dataclass
class Tally:
    """One batch's records: counters summed, histogram values kept, per dimensions."""

    sums: dict[_Key, float] = field(default_factory=dict)
    values: dict[_Key, list[float]] = field(default_factory=dict)

    def add(self, key: _Key, value: float) -> None:
        if key[0].kind == "counter":
            self.sums[key] = self.sums.get(key, 0) + value
        else:
            self.values.setdefault(key, []).append(value)

    def emit(self) -> None:
        """Never raises: a figure lost is no reason to retry a batch (the first failure
        is logged, once per process)."""
        try:
            for (metric, dims), total in self.sums.items():
                _instrument(metric).add(total, dict(dims))
            for (metric, dims), values in self.values.items():
                histogram, attributes = _instrument(metric), dict(dims)
                for value in values:
                    histogram.record(value, attributes)
        except Exception:
            if not _failed:
                _failed.append(True)
                log.exception("metrics could not be emitted; the app goes on without them")


_tally: ContextVar[Tally | None] = ContextVar("metrics_tally", default=None)


def record(metric: Metric, value: float, **dimensions: str) -> None:
    """Count ``value`` (a counter) or add it to the distribution (a histogram)."""
    if dimensions.keys() != metric.dimensions:
        raise ValueError(f"{metric.name} has dimensions {sorted(metric.dimensions)}, not {sorted(dimensions)}")
    if metric.kind == "counter" and not value:
        return
    key = (metric, tuple(sorted(dimensions.items())))
    tally = _tally.get()
    if tally is None:
        _emit_one(key, value)
    else:
        tally.add(key, value)


def _emit_one(key: _Key, value: float) -> None:
    tally = Tally()
    tally.add(key, value)
    tally.emit()


@contextlib.contextmanager
def batch(*, durable: bool = False) -> Iterator[Tally]:
    """Records within the block are emitted once, together, when it ends without an
    exception (tasks it starts share the tally). ``durable``: what the block records
    happened for good, and a retry will not do it again (an expiry, a publish), so it
    is emitted when the block fails too."""
    tally = Tally()
    token = _tally.set(tally)
    try:
        yield tally
    except BaseException:
        if durable:
            tally.emit()
        raise
    finally:
        _tally.reset(token)
    tally.emit()


_instruments: dict[Metric, Any] = {}


def _instrument(metric: Metric) -> Any:
    found = _instruments.get(metric)
    if found is None:
        from shared.platform.metrics_export import meter

        create = meter().create_counter if metric.kind == "counter" else meter().create_histogram
        found = _instruments[metric] = create(metric.name, unit=metric.unit, description=metric.description)
    return found


def reason_class(reason: str, errors: list[dict[str, Any]]) -> str:
    """A dead letter's reason, as a dimension of few values: ``internal`` (a batch that
    failed, not the message), the first field error's type (pydantic's, or ours such
    as ``timestamp_in_future`` and ``spoofed``), else ``unreadable`` (a body that is no
    JSON or no routed event, named in its reason)."""
    if reason.startswith("internal"):
        return "internal"
    if errors and isinstance(errors[0].get("type"), str):
        return str(errors[0]["type"])[:64]
    return "unreadable"
