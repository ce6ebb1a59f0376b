"""What a deployment's data storage holds of one simulation, matched to what was sent by
content, so that "every message accounted for exactly once" is checked without knowing
partitions or sequence numbers in advance.

Each message the simulator sends carries its device id (``{prefix}-NNN``, unique to the
run) and a number: telemetry ``sequence``, inference ``inferenceId``. An archive line
(containers ``telemetry`` and ``inference``) is matched by (stream, its ``deviceId``, that
number in its ``message``); a dead letter (``deadletter/{stream}/...``) by its body, the routed CloudEvent:
its ``subject`` (the topic) and ``data`` (the payload). Each archive line and dead letter
carries its Event Hubs origin (``eventHub.partitionId``, ``sequenceNumber``, ``position``),
which must be in one place only.

Latency publish -> stored is measured against the archive blob's creation time: a batch's
blob is created once (``If-None-Match: *``) and never changed, so its creation is when the
messages were stored. Storage keeps whole seconds, so the figure is the upper bound
(creation second + 1 s - publish time), at most a second above the truth.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.platform.storage_names import DEADLETTER_CONTAINER, INFERENCE_CONTAINER, TELEMETRY_CONTAINER
from tools.simulate.invariants import Place, origin
from tools.simulate.stand_in import Key, stream_of

CONTAINERS = {"telemetry": TELEMETRY_CONTAINER, "inference": INFERENCE_CONTAINER}
ContentKey = tuple[str, str, Any]  # stream, device id, sequence or inferenceId


def content_key(stream: str, device_id: str, data: Any) -> ContentKey | None:
    """The number a message carries, with its stream and device (None: none)."""
    if not isinstance(data, dict):
        return None
    number = data.get("sequence") if stream == "telemetry" else data.get("inferenceId")
    return None if number is None else (stream, device_id, number)


@dataclass
class Stored:
    """The run's archive lines and dead letters, by stream, and the archive blobs'
    creation times (epoch seconds) by content key."""

    lines: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"telemetry": [], "inference": []})
    letters: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"telemetry": [], "inference": []})
    created: dict[ContentKey, float] = field(default_factory=dict)

    def archived(self) -> Counter[ContentKey]:
        found: Counter[ContentKey] = Counter()
        for stream, lines in self.lines.items():
            for line in lines:
                key = content_key(stream, str(line.get("deviceId")), line.get("message"))
                if key is not None:
                    found[key] += 1
        return found

    def dead_lettered(self) -> Counter[Key]:
        found: Counter[Key] = Counter()
        for letters in self.letters.values():
            for letter in letters:
                key = letter_key(letter)
                if key is not None:
                    found[key] += 1
        return found

    def origins(self) -> Counter[Place]:
        return Counter(origin(stream, item) for stream in ("telemetry", "inference")
                       for item in (*self.lines[stream], *self.letters[stream]))


def letter_key(letter: dict[str, Any]) -> Key | None:
    """A dead letter's message as sent: the topic and payload of its routed CloudEvent."""
    try:
        event = orjson.loads(letter["body"])
    except (KeyError, orjson.JSONDecodeError):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("subject"), str) or "data" not in event:
        return None
    data = event["data"]
    return event["subject"], data.encode() if isinstance(data, str) else orjson.dumps(data)


def _hours(since: datetime, until: datetime) -> list[datetime]:
    hour = since.replace(minute=0, second=0, microsecond=0)
    found = []
    while hour <= until:
        found.append(hour)
        hour += timedelta(hours=1)
    return found


async def read_stored(service: Any, prefix: str, since: datetime) -> Stored:
    """The archive lines and dead letters of devices ``{prefix}-...`` in blobs created
    since ``since``, read from ``service`` (an async ``BlobServiceClient``); only the
    hours (archive) and days (dead letters) since then are listed."""
    from azure.core.exceptions import ResourceNotFoundError

    stored = Stored()
    now = datetime.now(UTC)
    floor = since.replace(microsecond=0) - timedelta(seconds=1)
    mine = f"{prefix}-"
    for stream, name in CONTAINERS.items():
        container = service.get_container_client(name)
        for hour in _hours(since - timedelta(minutes=5), now):
            try:
                async for blob in container.list_blobs(name_starts_with=f"{hour:%Y/%m/%d/%H}/"):
                    if blob.creation_time is not None and blob.creation_time < floor:
                        continue
                    data = await (await container.download_blob(blob.name)).readall()
                    created = (blob.creation_time or now).timestamp()
                    for raw in data.splitlines():
                        line = orjson.loads(raw) if raw else None
                        if isinstance(line, dict) and str(line.get("deviceId", "")).startswith(mine):
                            stored.lines[stream].append(line)
                            key = content_key(stream, line["deviceId"], line.get("message"))
                            if key is not None:
                                stored.created.setdefault(key, created)
            except ResourceNotFoundError:  # nothing archived yet: the app creates it
                break
    letters = service.get_container_client(DEADLETTER_CONTAINER)
    days = sorted({hour.date() for hour in _hours(since - timedelta(minutes=5), now)})
    for stream in CONTAINERS:
        for day in days:
            try:
                async for blob in letters.list_blobs(name_starts_with=f"{stream}/{day:%Y/%m/%d}/"):
                    if blob.last_modified is not None and blob.last_modified < floor:
                        continue
                    letter = orjson.loads(await (await letters.download_blob(blob.name)).readall())
                    raw = letter_key(letter)
                    if raw is not None and raw[0].startswith(f"devices/{mine}"):
                        stored.letters[stream].append(letter)
            except ResourceNotFoundError:
                break
    return stored


@dataclass(frozen=True)
class Sent:
    """One message sent: its topic and payload, and when (epoch seconds)."""

    topic: str
    payload: bytes
    at: float

    @property
    def stream(self) -> str:
        return stream_of(self.topic)

    def content(self) -> ContentKey | None:
        try:
            data = orjson.loads(self.payload)
        except orjson.JSONDecodeError:
            return None
        device = self.topic.split("/")[1]
        if isinstance(data, dict) and data.get("deviceId", device) != device:
            return None  # spoofed: never archived under its own number
        return content_key(self.stream, device, data)


@dataclass
class Accounting:
    missing: list[Sent]
    duplicates: int  # messages found more than once (delivered again: at least once)
    unknown: int  # archive lines or dead letters of the run that match nothing sent
    twice: list[Place]  # Event Hubs origins in more than one place
    latencies_ms: list[float]
    stored_until: float | None  # the last archive blob's creation (epoch seconds, whole)

    def problems(self) -> list[str]:
        found = []
        if self.missing:
            found.append(f"{len(self.missing)} sent never stored, e.g. {self.missing[0].topic} "
                         f"{self.missing[0].payload[:80]!r}")
        if self.unknown:
            found.append(f"{self.unknown} stored that were never sent")
        if self.twice:
            found.append(f"{len(self.twice)} Event Hubs positions in more than one place, e.g. {self.twice[0]}")
        return found


def account(sent: Iterable[Sent], stored: Stored) -> Accounting:
    """Each message sent against the storage's archive lines and dead letters."""
    archived, dead = stored.archived(), stored.dead_lettered()
    missing, duplicates, latencies = [], 0, []
    used_archive: set[ContentKey] = set()
    used_dead: set[Key] = set()
    for message in sent:
        key, raw = message.content(), (message.topic, message.payload)
        times = (archived[key] if key is not None else 0) + dead[raw]
        if key is not None and archived[key]:
            used_archive.add(key)
            latencies.append(1000 * (stored.created[key] + 1 - message.at))
        if dead[raw]:
            used_dead.add(raw)
        if times == 0:
            missing.append(message)
        duplicates += max(0, times - 1)
    unknown = sum(n for k, n in archived.items() if k not in used_archive) + \
        sum(n for k, n in dead.items() if k not in used_dead)
    twice = sorted((place for place, n in stored.origins().items() if n > 1), key=str)
    return Accounting(missing, duplicates, unknown, twice, latencies,
                      max(stored.created.values()) + 1 if stored.created else None)
