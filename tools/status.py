"""The app's metrics from a local run: the figures the workbook in ``infra/`` charts
in Azure (docs/monitoring.md), summed since the process started.

``make serve`` keeps them in memory and serves them on ``GET /local/metrics`` (not a
function: in Azure each instance would only know its own share, and the workbook
reads them all); ``python -m tools.status`` prints that as a table. The demo and the
simulator print the same table at their end.

    python -m tools.status                       # the server on http://127.0.0.1:7071
    python -m tools.status --url http://127.0.0.1:7072 --json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import urllib.request
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

from shared.platform.metrics import CATALOGUE

LOCAL_PATH = "/local/metrics"


@dataclass(frozen=True)
class Figure:
    """One metric and dimensions: a counter's total, or a histogram's count, sum and max."""

    name: str
    dimensions: dict[str, str]
    value: float  # the total; a histogram's sum
    count: int | None = None  # histograms only
    maximum: float | None = None  # histograms only


@cache
def install() -> Any:
    """Keep the process's metrics in memory (an OpenTelemetry ``InMemoryMetricReader``,
    cumulative), once per process; returns the reader."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


def figures(reader: Any) -> list[Figure]:
    """What ``reader`` holds of the app's metrics, sorted by name and dimensions."""
    names = {m.name for m in CATALOGUE}
    found = []
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name not in names:
                    continue
                for point in metric.data.data_points:
                    dims = {str(k): str(v) for k, v in (point.attributes or {}).items()}
                    if hasattr(point, "bucket_counts"):
                        found.append(Figure(metric.name, dims, point.sum, point.count, point.max))
                    else:
                        found.append(Figure(metric.name, dims, point.value))
    return sorted(found, key=lambda f: (f.name, sorted(f.dimensions.items())))


def since(before: list[Figure], after: list[Figure]) -> list[Figure]:
    """What was recorded between two readings (a histogram's max stays the process's)."""
    earlier = {(f.name, tuple(sorted(f.dimensions.items()))): f for f in before}
    changed = []
    for f in after:
        old = earlier.get((f.name, tuple(sorted(f.dimensions.items()))))
        if old is None:
            changed.append(f)
        elif f.value != old.value or f.count != old.count:
            count = None if f.count is None else f.count - (old.count or 0)
            changed.append(Figure(f.name, f.dimensions, f.value - old.value, count, f.maximum))
    return changed


def total(found: list[Figure], name: str, **dimensions: str) -> float:
    """A metric's total over the figures whose dimensions include ``dimensions``."""
    return sum(f.value for f in found if f.name == name and dimensions.items() <= f.dimensions.items())


def as_json(found: list[Figure]) -> list[dict[str, Any]]:
    return [asdict(f) for f in found]


def render(found: list[Figure]) -> str:
    """The figures as a table, for a terminal or a log."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="The app's metrics (tools.status; the workbook in Azure)")
    for column in ("metric", "dimensions", "total", "count", "mean", "max"):
        table.add_column(column, justify="right" if column in ("total", "count", "mean", "max") else "left")
    for f in found:
        dims = " ".join(f"{k}={v}" for k, v in sorted(f.dimensions.items()))
        if f.count is None:
            table.add_row(f.name, dims, f"{f.value:g}", "", "", "")
        else:
            mean = f.value / f.count if f.count else 0.0
            table.add_row(f.name, dims, "", str(f.count), f"{mean:.3g}", f"{f.maximum or 0:.3g}")
    if not found:
        table.add_row("(nothing recorded yet)", "", "", "", "", "")
    console = Console(width=140, file=io.StringIO(), record=True)
    console.print(table)
    return console.export_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:7071", help="the local server (make serve)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    try:
        with urllib.request.urlopen(args.url.rstrip("/") + LOCAL_PATH, timeout=10) as response:
            rows = json.loads(response.read())
    except OSError as exc:
        print(f"no local server at {args.url} ({exc}); start one with make serve", file=sys.stderr)
        return 1
    found = [Figure(**row) for row in rows]
    print(json.dumps(rows, indent=2) if args.json else render(found), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
