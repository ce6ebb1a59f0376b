"""Reading the app's metrics in tests: what a block recorded (the local view's own
difference of two readings, tools.status.since), and how many data points each
emission sent."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.platform import metrics
from tools.status import Figure, figures, install, since

Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Measured:
    """What the block added, by name and dimensions, and the data points each
    emission sent."""

    found: list[Figure] = field(default_factory=list)
    emissions: list[int] = field(default_factory=list)

    @property
    def added(self) -> dict[Key, float]:
        """Counters: the total added; histograms: the number of values added."""
        return {(f.name, tuple(sorted(f.dimensions.items()))): f.value if f.count is None else f.count
                for f in self.found if (f.value if f.count is None else f.count)}

    def of(self, name: str, **dimensions: str) -> float:
        return self.added.get((name, tuple(sorted(dimensions.items()))), 0)

    def figure(self, name: str, **dimensions: str) -> Figure:
        (found,) = [f for f in self.found if f.name == name and f.dimensions == dimensions]
        return found


@contextlib.contextmanager
def measured(monkeypatch: Any) -> Iterator[Measured]:
    reader = install()
    result = Measured()
    emit = metrics.Tally.emit

    def counted(tally: metrics.Tally) -> None:
        result.emissions.append(len(tally.sums) + sum(len(v) for v in tally.values.values()))
        emit(tally)

    monkeypatch.setattr(metrics.Tally, "emit", counted)
    before = figures(reader)
    yield result
    result.found = since(before, figures(reader))
