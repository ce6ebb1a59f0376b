"""The simulation's final report: figures, the invariants checked, plain text and JSON."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.platform.metrics import ARCHIVED as ARCHIVED_METRIC
from tools.status import Figure, as_json, render, total


def reason_kind(reason: str) -> str:
    """A dead letter's reason without its particulars (values, positions), to count by."""
    head = re.split(r"[:;]", reason, maxsplit=1)[0]
    return re.sub(r" at character \d+", "", re.sub(r"'[^']*'", "'…'", head)).strip()


def _compact(value: Any) -> str:
    return orjson.dumps(value).decode()


def percentile(values: list[float], rank: float) -> float | None:
    """The nearest-rank percentile of ``values``, a value that was measured (None when
    there are none); ``rank`` in percent."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(rank / 100 * len(ordered)) - 1))]


def latency_summary(values: list[float]) -> dict[str, float | None]:
    """The report's ``latency_ms``: median and 95th percentile, to a tenth of a ms."""
    return {name: None if (value := percentile(values, rank)) is None else round(value, 1)
            for name, rank in (("p50", 50), ("p95", 95))}


@dataclass
class Check:
    name: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Report:
    devices: int
    rate: float
    duration: float
    faults: list[str]
    behaviours: dict[str, int]
    published: dict[str, int] = field(default_factory=dict)  # by kind: ok, bad, spoofed
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    redeliveries: int = 0
    broker_duplicates: int = 0  # QoS 1 messages the broker passed on twice (sent again after a lost connection)
    dropped: int = 0
    lifecycle: dict[str, int] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)
    command_repeats: int = 0  # deliveries of a command to its device beyond the first (at least once)
    broadcasts: int = 0
    queued: dict[str, Any] = field(default_factory=dict)  # commands for a device while it was offline
    retry: dict[str, Any] = field(default_factory=dict)  # one request twice with one Idempotency-Key
    fleet_job: dict[str, Any] = field(default_factory=dict)
    broadcast_reach: dict[str, dict[str, Any]] = field(default_factory=dict)  # by broadcast name
    refused: dict[str, Any] = field(default_factory=dict)  # a command to a disabled client
    alerts: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    throughput: float = 0.0  # messages stored per second
    checks: list[Check] = field(default_factory=list)
    metrics: list[Figure] = field(default_factory=list)  # what the app's metrics recorded during the run

    def add_metrics(self, found: list[Figure]) -> None:
        """The app's metrics of the run (tools.status), checked against what storage
        holds: each stream's archived messages, counted once each by the app."""
        self.metrics = found
        counted = {stream: total(found, ARCHIVED_METRIC.name, stream=stream) for stream in self.streams}
        self.check("the app's metrics count every archived message once", [
            f"{stream}: edge.stream.archived {counted[stream]:g}, the archive {f['archived']}"
            for stream, f in self.streams.items() if counted[stream] != f["archived"]])

    def check(self, name: str, problems: list[str]) -> None:
        self.checks.append(Check(name, problems))

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"devices": self.devices, "ratePerDevice": self.rate, "durationSeconds": self.duration,
                "faults": self.faults, "behaviours": self.behaviours, "published": self.published,
                "streams": self.streams, "redeliveries": self.redeliveries,
                "brokerDuplicates": self.broker_duplicates, "droppedConnections": self.dropped,
                "lifecycle": self.lifecycle, "commands": self.commands, "commandRepeats": self.command_repeats,
                "broadcasts": self.broadcasts,
                "offlineQueue": self.queued, "idempotentRetry": self.retry, "fleetJob": self.fleet_job,
                "broadcastReach": self.broadcast_reach, "disabledClient": self.refused,
                "alerts": self.alerts, "latencyMs": self.latency_ms, "throughputPerSecond": self.throughput,
                "checks": [{"name": c.name, "ok": c.ok, "problems": c.problems} for c in self.checks],
                "metrics": as_json(self.metrics),
                "ok": self.ok}

    def _operations(self) -> list[str]:
        """The operator's requests beyond the steady commands, as far as they ran."""
        lines = []
        if self.queued:
            lines.append(f"Offline device {self.queued['deviceId']}: {len(self.queued['commands'])} commands queued "
                         f"({', '.join(sorted(set(self.queued['statusWhenSent'])))}), received once it connected: "
                         + ", ".join(self.queued["received"]))
        if self.retry:
            lines.append(f"Retry with the same Idempotency-Key to {self.retry['deviceId']}: "
                         f"{' then '.join(map(str, self.retry['statuses']))}, "
                         + ("the same command" if self.retry["sameCommand"] else "two commands"))
        if self.fleet_job:
            job = self.fleet_job
            lines.append(f"Fleet job {job['name']} to {_compact(job['target'])}: {job['total']} devices, counts "
                         f"{_compact(job['countsWhenCreated'])} when created, {_compact(job['counts'])} at the end")
        lines.append(f"Broadcasts: {self.broadcasts}" + "".join(
            f"; {name} to {reach['to']}: received by {reach['received']} of {reach['addressed']} devices"
            for name, reach in self.broadcast_reach.items()))
        if self.refused:
            lines.append(f"Disabled client {self.refused['deviceId']}: a command answered {self.refused['status']} "
                         f"({self.refused.get('detail')})")
        return lines

    def text(self) -> str:
        lines = [f"\nDevices: {self.devices} ({', '.join(f'{n} {b}' for b, n in self.behaviours.items())}), "
                 f"{self.rate:g} messages/s each for {self.duration:g} s; faults: {', '.join(self.faults) or 'none'}",
                 f"Published: {sum(self.published.values())} "
                 f"({', '.join(f'{n} {k}' for k, n in sorted(self.published.items()))})",
                 f"  {'stream':<10} {'sent':>6} {'routed':>6} {'archived':>8} {'dead-lettered':>13}  by reason"]
        for stream, figures in self.streams.items():
            reasons = "; ".join(f"{n} {r}" for r, n in sorted(figures["deadLetterReasons"].items()))
            lines.append(f"  {stream:<10} {figures['sent']:>6} {figures['routed']:>6} {figures['archived']:>8} "
                         f"{figures['deadLettered']:>13}  {reasons}")
        lines += [f"Redelivered overlapping ranges: {self.redeliveries}; dropped connections: {self.dropped}; "
                  f"messages the broker passed on twice (QoS 1): {self.broker_duplicates}",
                  *([f"Life cycle events delivered: {self.lifecycle.get('events', 0)} "
                     f"({self.lifecycle.get('duplicates', 0)} duplicates, {self.lifecycle.get('outOfOrder', 0)} "
                     "out of order)"] if self.lifecycle else []),  # none in Azure mode: Event Grid sends them
                  "Commands by status: " + (", ".join(f"{s} {n}" for s, n in sorted(self.commands.items()))
                                            or "none")
                  + f"; deliveries of a command beyond its first (at least once): {self.command_repeats}",
                  *self._operations(),
                  "Alerts: " + (", ".join(f"{r} {n}" for r, n in sorted(self.alerts.items())) or "none"),
                  f"Latency, publish to stored: p50 {self.latency_ms.get('p50')} ms, "
                  f"p95 {self.latency_ms.get('p95')} ms",
                  f"Throughput: {self.throughput:g} messages stored per second", "Checks:"]
        for check in self.checks:
            lines.append(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}"
                         + ("" if check.ok else ": " + "; ".join(check.problems)))
        if self.metrics:  # what make serve shows on /local/metrics, and the workbook in Azure
            lines.append(render(self.metrics).rstrip())
        return "\n".join(lines)
