"""``make bench``'s cold request figure measures what it says: both sides, in fresh
interpreters, read the same stored device from the session's Azurite."""

from __future__ import annotations

from typing import Any

import pytest

from tools import bench


@pytest.mark.usefixtures("app_env")
def test_the_cold_request_figure_times_both_sides_reading_the_stored_device(
        run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run(bench.store_cold_device())
    monkeypatch.setattr(bench, "REPEATS", 1)
    figures = bench.cold_request_ratio()  # each side asserts it read the device
    assert figures["cold_request_app_ms"] > 0 and figures["cold_request_naive_ms"] > 0
    assert figures["cold_request_ratio"] == pytest.approx(
        figures["cold_request_app_ms"] / figures["cold_request_naive_ms"], rel=0.01)
