"""The fast path in front of azure-functions' enqueued-time parser (blueprints/
conversion.py) answers exactly as the library does, or leaves the string to it; the
app installs it when the worker imports function_app."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from azure.functions import meta
from hypothesis import given, settings
from hypothesis import strategies as st

from blueprints.conversion import install, zoneless


def library() -> Any:
    install()
    return meta._BaseConverter.__dict__["_parse_datetime"].library


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=n, max_size=n)


# The host's shape and its near misses: any digits (month 13, hour 24, second 60 included),
# fractions of 0 to 12 digits, zones the library reads itself, another separator.
SHAPES = st.builds(
    lambda y, mo, d, h, mi, s, fraction, zone, sep: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{fraction}{zone}",
    digits(4), digits(2), digits(2), digits(2), digits(2), digits(2),
    st.one_of(st.just(""), st.just("."), st.integers(1, 12).flatmap(lambda n: digits(n).map(lambda f: "." + f))),
    st.sampled_from(["", "", "", "Z", "+00:00", "-00:00", "+01:00"]), st.sampled_from(["T", "T", " "]))
REAL = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda d: d.isoformat(timespec="microseconds") + "7")  # seven digits, as .NET writes them


@settings(max_examples=1000)
@given(st.one_of(SHAPES, REAL))
def test_the_fast_path_answers_as_the_library_or_leaves_it_the_string(text: str) -> None:
    fast = zoneless(text)
    try:
        expected = library()(meta._BaseConverter, text)
    except ValueError:
        assert fast is None, f"{text!r}: the library refuses it, the fast path must leave it to the library"
        return
    if fast is not None:
        assert (fast, fast.tzinfo) == (expected, expected.tzinfo), text


def test_the_host_s_enqueued_time_is_read_naive_with_six_digits() -> None:
    assert zoneless("2024-07-26T06:53:34.1610000") == datetime(2024, 7, 26, 6, 53, 34, 161000)
    assert zoneless("2024-07-26T06:53:34") == datetime(2024, 7, 26, 6, 53, 34)
    assert zoneless("2024-07-26T06:53:34Z") is None, "a zone: the library's"
    assert zoneless("2024-02-30T06:53:34") is None, "no such day: the library's, which raises"


@pytest.mark.parametrize("text", ["2024-07-26T06:53:34.1610000", "2024-07-26T06:53:34.161+00:00", None, ""])
def test_the_installed_parser_is_what_the_worker_s_converters_call(text: str | None) -> None:
    import function_app  # noqa: F401 - the worker imports it to index the app, which installs the fast path

    installed = meta._BaseConverter.__dict__["_parse_datetime"]
    assert installed.fast_path
    from azure.functions.eventhub import EventHubConverter

    assert EventHubConverter._parse_datetime(text) == installed.library(EventHubConverter, text)
