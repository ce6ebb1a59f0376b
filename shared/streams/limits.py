"""The bounds a stream message must stay within, in one place.

A device is not trusted to be reasonable: one message with 20 000 metrics, a
megabyte string or JSON nested 5 000 deep would cost every later step (the
archive line, latest state, alert rules) far more than it is worth. Each bound
below is a documented default; a message beyond any of them is dead-lettered
with a reason naming the bound. ``max_future_skew`` is the one meant to become a
setting (device clocks drift); the size bounds are part of the message contract.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Bounds for one Event Hub body and the messages in it (hashable, so models
    built for a set of limits can be cached)."""

    # The whole Event Hub event body, in bytes (Event Hubs allows 1 MiB per event;
    # Event Grid routes at most 512 KiB; a telemetry message is usually under 1 KiB).
    max_body_bytes: int = 256 * 1024
    # Messages in one JSON array body (an IoT Operations dataflow batch).
    max_messages_per_array: int = 1000
    # Entries in a telemetry message's ``metrics``.
    max_metrics: int = 500
    # Characters in a metric name, a tag name, a detection label and the name of
    # an unknown field (names end up as keys: latest state, statistics, rules).
    max_key_length: int = 128
    # Characters in a string value: a metric, a tag value, a string in an unknown field.
    max_string_length: int = 1024
    # Entries in a telemetry message's ``tags``.
    max_tags: int = 64
    # Detections in one inference result.
    max_detections: int = 500
    # Nesting of an unknown field's value (kept in the archive): ``"x": 1`` is 0,
    # ``"x": {"y": [1]}`` is 2. The JSON parser itself stops at 1024 levels.
    max_extra_depth: int = 32
    # How far a message's timestamp may lie ahead of the time it is received, in
    # seconds; beyond that the device clock is wrong and its "latest" state would
    # shadow every true later message.
    max_future_skew: float = 300.0


DEFAULT_LIMITS = StreamLimits()
