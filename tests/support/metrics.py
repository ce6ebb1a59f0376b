"""Reading the app's metrics in tests: what changed between two moments, and how
many data points each batch emitted."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.platform import metrics
from tools.status import figures, install

Key = tuple[str, tuple[tuple[str, str], ...]]


def snapshot() -> dict[Key, tuple[float, int | None]]:
    """Every figure now: (total or sum, histogram count) by name and dimensions."""
    return {(f.name, tuple(sorted(f.dimensions.items()))): (f.value, f.count) for f in figures(install())}


@dataclass
class Measured:
    """What the block added, by name and dimensions (counters: the total; histograms:
    the values' count), and the data points each emission sent."""

    added: dict[Key, float] = field(default_factory=dict)
    emissions: list[int] = field(default_factory=list)

    def of(self, name: str, **dimensions: str) -> float:
        return self.added.get((name, tuple(sorted(dimensions.items()))), 0)

    def names(self) -> set[str]:
        return {name for name, _ in self.added}


@contextlib.contextmanager
def measured(monkeypatch: Any) -> Iterator[Measured]:
    install()
    result = Measured()
    emit = metrics.Tally.emit

    def counted(tally: metrics.Tally) -> None:
        result.emissions.append(len(tally.sums) + sum(len(v) for v in tally.values.values()))
        emit(tally)

    monkeypatch.setattr(metrics.Tally, "emit", counted)
    before = snapshot()
    yield result
    after = snapshot()
    for key, (value, count) in after.items():
        old_value, old_count = before.get(key, (0.0, 0))
        added = (count or 0) - (old_count or 0) if count is not None else value - old_value
        if added:
            result.added[key] = added
