"""What the consumer asks and gets: where a receiver starts (its selector filter, as the
service reads it, with the service's refusals) and each event as a message with the
service's annotations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from proton import Described, Message, symbol, timestamp, ulong

from standins.eventhub_factory import Partition, Published
from standins.eventhubs_amqp.batches import CONTENT_TYPE, PARTITION_KEY

SEQUENCE_NUMBER = symbol("x-opt-sequence-number")
OFFSET = symbol("x-opt-offset")
ENQUEUED_TIME = symbol("x-opt-enqueued-time")
SELECTOR_FILTER = symbol("apache.org:selector-filter:string")
SELECTOR_FILTER_CODE = ulong(0x0000013700000000A)  # the same filter type by its numeric descriptor
_SELECTOR = re.compile(r"amqp\.annotation\.(x-opt-sequence-number|x-opt-offset|x-opt-enqueued-time) (>=|>) '([^']*)'")
_EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)


class Refusal(ValueError):
    """A link the service would not attach: the AMQP error condition and its description."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


def selector(filters: Any) -> str:
    """The expression of a receiver source's ``apache.org:selector-filter:string`` (a
    proton ``Data``: the filter set as the client sent it)."""
    filters.rewind()
    found: Any = filters.get_object() if filters.next() else None
    if not found:
        raise Refusal("amqp:not-implemented", "no starting position: the receiver's source needs an "
                      "apache.org:selector-filter:string filter")
    if not isinstance(found, dict) or set(found) != {SELECTOR_FILTER}:
        raise Refusal("amqp:not-implemented", f"filters {sorted(map(str, found))}: only "
                      "apache.org:selector-filter:string is served")
    value = found[SELECTOR_FILTER]
    if not isinstance(value, Described) or value.descriptor not in (SELECTOR_FILTER, SELECTOR_FILTER_CODE) \
            or not isinstance(value.value, str):
        raise Refusal("com.microsoft:argument-error", f"the selector filter {value!r} is not a described string")
    return value.value


def start_of(log: Partition, expression: str) -> int:
    """The sequence number a receiver whose filter is ``expression`` starts at."""
    match = _SELECTOR.fullmatch(expression)
    if match is None:
        raise Refusal("com.microsoft:argument-error", f"the filter expression {expression!r} is not "
                      "amqp.annotation.x-opt-(sequence-number|offset|enqueued-time) (>|>=) 'value'")
    name, operator, value = match.groups()
    inclusive = operator == ">="
    end = log.next_sequence
    if name == "x-opt-offset" and value in ("-1", "@latest"):
        return log.first_sequence if value == "-1" else end
    try:
        number = int(value)
    except ValueError:
        raise Refusal("com.microsoft:argument-error", f"the filter value {value!r} is not a number") from None
    if name == "x-opt-sequence-number":
        start = number if inclusive else number + 1
        if start > end:
            raise Refusal("com.microsoft:argument-out-of-range", f"The supplied sequence number '{number}' is "
                          f"invalid. The last sequence number in the system is '{end - 1}'")
        return max(start, log.first_sequence)  # expired events: the oldest one held comes first
    if name == "x-opt-offset":
        last = log.log[-1].offset if log.log else -1
        if number > last:
            raise Refusal("com.microsoft:argument-out-of-range", f"The supplied offset '{number}' is invalid. "
                          f"The last offset in the system is '{last}'")
        return next((e.sequence_number for e in log.log
                     if e.offset > number or (inclusive and e.offset == number)), end)
    return next((e.sequence_number for e in log.log
                 if (ms := milliseconds(e.enqueued)) > number or (inclusive and ms == number)), end)


def milliseconds(moment: datetime) -> int:
    """A time as an AMQP timestamp: whole milliseconds since the Unix epoch."""
    return (moment - _EPOCH_START) // timedelta(milliseconds=1)


def event_message(record: Published) -> bytes:
    """One event as a receiver gets it: the original body, properties and content type
    (every event taken had the contract's), and the service's annotations."""
    annotations: dict[Any, Any] = {SEQUENCE_NUMBER: record.sequence_number, OFFSET: str(record.offset),
                                   ENQUEUED_TIME: timestamp(milliseconds(record.enqueued))}
    if record.partition_key is not None:
        annotations[PARTITION_KEY] = record.partition_key
    message = Message(body=record.body, inferred=True, content_type=CONTENT_TYPE, annotations=annotations,
                      properties=dict(record.properties) or None)
    return message.encode()
