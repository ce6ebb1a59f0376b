"""Every timestamp the app accepts passes through here: RFC 3339 with a zone, within
a sane range, normalised to UTC.

A timestamp without a zone cannot be compared with one that has a zone (Python
raises ``TypeError``), and one near year 1 or 9999 overflows as soon as it is moved
by a day or a zone; either would poison every later event of its device. So they are
refused here, with a reason, before anything is stored.

RFC 3339 allows any number of fraction digits and a leap second (second 60, at the
end of a month in UTC, section 5.7); a ``datetime`` holds neither. Fractions are cut,
not rounded, to the microsecond: rounding ``23:59:59.9999999`` up would move a time
into the next day. A leap second is read as the last microsecond before the next
second (``23:59:59.999999``): ordered after every earlier time and before the next
day, like the instant it is, and it stays in its UTC hour and day (the statistics'
hour, the archive's folder); ``2099-12-31T23:59:60Z`` stays within range.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from shared.platform.errors import InvalidInput

# Device clocks that never synchronised say 1970; nothing here needs earlier times,
# and nothing real is stamped past 2100.
MIN_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)

# RFC 3339, section 5.6: date-time = full-date "T" full-time; T and Z may be lower case.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_timestamp(text: object, *, field: str) -> datetime:
    """An RFC 3339 date-time with a zone (``2026-11-20T08:00:00Z``, any fraction, any
    offset, a leap second), as an aware UTC datetime; InvalidInput naming ``field``
    otherwise."""
    if not isinstance(text, str):
        raise InvalidInput(f"{field} must be an RFC 3339 date-time string")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise InvalidInput(f"{field} must be an RFC 3339 date-time with a time zone, e.g. 2026-11-20T08:00:00Z")
    if text[-1] == "Z" and text[10] == "T":
        # The common form, read by the C parser at a fifth of the cost (streams parse
        # one per message): the same fields and cut of the fraction as below, in UTC
        # already. A leap second or a bad field makes it refuse; the general path then
        # decides.
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return value if MIN_TIMESTAMP <= value < MAX_TIMESTAMP else check_timestamp(value, field=field)
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    leap = second == "60"
    try:
        if zulu:
            zone = UTC
        else:
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError("the offset must be at most 23:59")
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            zone = timezone(-offset if sign == "-" else offset)
        value = datetime(int(year), int(month), int(day), int(hour), int(minute), 59 if leap else int(second),
                         999999 if leap else int((fraction or "0")[:6].ljust(6, "0")), tzinfo=zone)
    except ValueError as exc:  # month 13, 25 o'clock, second 61, offset of 24 hours or more
        raise InvalidInput(f"{field} is not a valid date-time: {exc}") from None
    value = check_timestamp(value, field=field)
    if leap and (value.hour, value.minute, (value + timedelta(days=1)).day) != (23, 59, 1):
        raise InvalidInput(f"{field} has second 60, a leap second, which only the last minute of a month has "
                           "in UTC (23:59:60Z)")
    return value


def check_timestamp(value: datetime, *, field: str) -> datetime:
    """``value`` in UTC if it has a zone and lies in the accepted range."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{field} has no time zone, so it cannot be ordered against other times")
    # Compared before conversion: moving 0001-01-01T00:00+01:00 to UTC would overflow.
    if not MIN_TIMESTAMP <= value < MAX_TIMESTAMP:
        raise InvalidInput(f"{field} must lie between {format_timestamp(MIN_TIMESTAMP)} and "
                           f"{format_timestamp(MAX_TIMESTAMP)}")
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` (microseconds only when there are any)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
