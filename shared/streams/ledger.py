"""What a partition's archive holds, as storage records it: pure decisions over one
row of table ``appmeta`` per (stream, hub, partition), which every writer updates
conditionally on its ETag (:mod:`shared.streams.archive` does the I/O).

- ``blobs``: the archive blobs written most recently, each with the sequence numbers
  it covers and its name (so a redelivery can redo what depends on a blob, such as
  model statistics, from its lines);
- ``spans``: older blobs, folded into merged ranges of sequence numbers;
- ``intents``: blobs a writer announced and may or may not have written yet.

A writer first records its intent (the range and a blob name no one else uses),
then creates the blob with ``If-None-Match: *``. Anyone who meets an intent over
events it holds settles it by the blob's name alone: the blob exists (it was
written: its range is archived), or the settler creates an empty "void" blob of that
name first, so the announced write can never happen (the writer's create fails,
its invocation fails and is retried). Either way no sequence number is archived
twice, whoever holds the partition's lease in Event Hubs, and a range no blob holds
(events a last retry dead-lettered) stays open for a replay to fill.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

# Blobs kept by name: as many as model statistics remember per row (stats.py), so
# a redelivery of anything they may still lack finds its blob.
RECENT_BLOBS = 64
# The row is one string property: at most 32 K UTF-16 characters (64 KiB). Worst
# case, with 19-digit sequence numbers: a range 42 characters, a blob about 100 (its
# name stored without the hub and partition), an intent as much. So 500 ranges
# (21 K), 64 blobs (6.4 K) and 16 intents (1.6 K) stay below 30 K.
# Ranges kept apart before the oldest gaps are folded over (a gap is what a last
# retry dead-lettered and no replay filled yet).
MAX_SPANS = 500
# Blobs one ledger write announces; a delivery with more runs (a replay across many
# gaps) announces the rest in the next write.
MAX_INTENTS = 16


@dataclass(frozen=True, slots=True)
class Blob:
    """An archive blob (or an intent to write one): sequence numbers ``first`` to
    ``last`` of the partition."""

    first: int
    last: int
    name: str

    def covers(self, sequence: int) -> bool:
        return self.first <= sequence <= self.last


@dataclass(frozen=True, slots=True)
class Ledger:
    spans: tuple[tuple[int, int], ...] = ()
    blobs: tuple[Blob, ...] = ()
    intents: tuple[Blob, ...] = ()
    generation: int = 0
    # Gaps folded over because there were too many (logged; see MAX_SPANS).
    folded: tuple[tuple[int, int], ...] = field(default=(), compare=False)

    def archived(self, sequence: int) -> bool:
        return any(a <= sequence <= b for a, b in self.spans) or any(b.covers(sequence) for b in self.blobs)

    def blob_of(self, sequence: int) -> Blob | None:
        return next((b for b in self.blobs if b.covers(sequence)), None)

    def intents_over(self, sequences: Iterable[int]) -> list[Blob]:
        wanted = set(sequences)
        return [i for i in self.intents if any(i.covers(s) for s in wanted)]

    def with_intents(self, new: Sequence[Blob]) -> Ledger:
        return replace(self, intents=(*self.intents, *new), generation=self.generation + 1)

    def settled(self, written: Sequence[Blob], void: Sequence[Blob] = ()) -> Ledger:
        """The intents ``written`` are blobs now, and those ``void`` are no more."""
        gone = set(written) | set(void)
        blobs = sorted({b.first: b for b in (*self.blobs, *written) if b.name}.values(), key=lambda b: b.first)
        spans = [*self.spans, *((b.first, b.last) for b in written if not b.name)]  # no blob: a range only
        while len(blobs) > RECENT_BLOBS:
            oldest = blobs.pop(0)
            spans.append((oldest.first, oldest.last))
        merged, folded = _merge(spans)
        return replace(self, spans=merged, blobs=tuple(blobs), intents=tuple(i for i in self.intents if i not in gone),
                       generation=self.generation + 1, folded=folded)

    def to_row(self, prefix: str) -> dict[str, Any]:
        """The row's properties; ``prefix`` (``{hub}-{partition}-``, in every blob name
        and up to 258 characters) is left out of the names."""
        def short(blob: Blob) -> list[Any]:
            return [blob.first, blob.last, blob.name.replace(prefix, "*", 1)]

        return {"ledger": orjson.dumps({
            "spans": self.spans, "blobs": [short(b) for b in self.blobs], "intents": [short(i) for i in self.intents],
            "generation": self.generation,
        }).decode()}

    @classmethod
    def from_row(cls, row: dict[str, Any] | None, prefix: str) -> Ledger:
        if row is None:
            return cls()
        if "ledger" not in row:  # the watermark of the chain that came before: all of it is archived
            return cls(spans=((0, int(row["lastSequence"])),))
        data = orjson.loads(row["ledger"])

        def blob(item: list[Any]) -> Blob:
            return Blob(int(item[0]), int(item[1]), str(item[2]).replace("*", prefix, 1))

        return cls(spans=tuple((int(a), int(b)) for a, b in data["spans"]), blobs=tuple(map(blob, data["blobs"])),
                   intents=tuple(map(blob, data["intents"])), generation=int(data["generation"]))


def _merge(spans: list[tuple[int, int]]) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """Adjacent and overlapping ranges merged; past ``MAX_SPANS`` the oldest gaps are
    closed (returned, to be logged: a replay into them is taken as archived)."""
    merged: list[list[int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    folded: list[tuple[int, int]] = []
    while len(merged) > MAX_SPANS:
        (a, b), (c, d) = merged[0], merged[1]
        folded.append((b + 1, c - 1))
        merged[:2] = [[a, d]]
    return tuple((a, b) for a, b in merged), tuple(folded)


def runs(sequences: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted distinct sequence numbers as runs of consecutive ones: a blob covers a
    run and nothing between (a number this delivery did not hold is never claimed)."""
    found: list[list[int]] = []
    for s in sorted(set(sequences)):
        if found and s == found[-1][1] + 1:
            found[-1][1] = s
        else:
            found.append([s, s])
    return [(a, b) for a, b in found]
