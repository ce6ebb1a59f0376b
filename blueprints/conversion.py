"""The worker's conversion of an Event Hubs batch, made cheap where it is slow.

azure-functions' converter (the library Microsoft's worker converts triggers with)
parses each event's enqueued time by trying twelve UTC formats with ``strptime``,
each failing with an exception, before the zone-less one the host sends
(``2024-07-26T06:53:34.161``, Azure/azure-functions-python-worker#1549): 195 µs of
an event's 415 in the fleet's shape on one bench machine, more than the app's own
work. For exactly that shape, an ISO date and time without a zone, the fields are
read straight into the same naive ``datetime`` (the fraction cut to six digits, as
the library cuts it); anything else, and any value the constructor refuses, goes to
the library's parser unchanged, which answers or raises as before.
``tests/test_conversion.py`` compares the two on generated strings.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

ZONELESS = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?")


def zoneless(text: str) -> datetime | None:
    """``text`` read as the library reads a zone-less ISO date and time, or None when it
    is not one (or not a valid one: the library decides, and words the error)."""
    match = ZONELESS.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    micro = int((fraction or "")[:6].ljust(6, "0"))
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
    except ValueError:
        return None


def install() -> None:
    """Put the fast path in front of the library's ``_parse_datetime``, once."""
    from azure.functions import meta

    library = meta._BaseConverter.__dict__["_parse_datetime"]
    if getattr(library, "fast_path", False):
        return
    parse_as_the_library = library.__func__

    def parse(cls: Any, datetime_str: str | None) -> datetime | None:
        return (datetime_str and zoneless(datetime_str)) or parse_as_the_library(cls, datetime_str)

    fast = classmethod(parse)
    fast.fast_path = True  # type: ignore[attr-defined]
    fast.library = parse_as_the_library  # type: ignore[attr-defined]  # what the tests compare with
    meta._BaseConverter._parse_datetime = fast  # type: ignore[assignment]
