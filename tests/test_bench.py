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


STREAM_FIGURES = ("telemetry_cpu_ratio", "telemetry_requests_per_1000", "telemetry_speedup_vs_naive",
                  "telemetry_msgs_per_s", "naive_telemetry_msgs_per_s", "telemetry_fleet_msgs_per_s",
                  "telemetry_worker_cpu_us_per_msg", "telemetry_fleet_worker_cpu_us_per_msg", "inference_msgs_per_s")


@pytest.mark.usefixtures("app_env")
def test_a_tiny_round_of_the_stream_figures_runs_and_counts_real_storage_requests(
        run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("CPU_MESSAGES", 200), ("CPU_ROUNDS", 1), ("COUNTED_BATCHES", 2), ("SPEED_MESSAGES", 200),
                        ("SPEED_CHUNKS", 2), ("FLEET_DEVICES", 100)):
        monkeypatch.setattr(bench, name, value)
    figures = run(bench.stream_figures())  # each rate asserts that every message was archived
    for name in STREAM_FIGURES:
        assert isinstance(figures[name], float) and figures[name] > 0, (name, figures)
    assert figures["telemetry_requests_per_1000"] >= 1000 / bench.BATCH, "at least the archive blob of each batch"

    requests = run(bench.counted_telemetry_requests(2))
    blob_writes = [path for method, path in requests.seen if method == "PUT" and "/telemetry/" in path]
    state_writes = [path for method, path in requests.seen if method in ("PUT", "POST") and "/devices" in path]
    assert len(blob_writes) >= 2, requests.seen
    assert len(state_writes) >= 2 * bench.STREAM_DEVICES, requests.seen



@pytest.mark.usefixtures("app_env")
def test_a_connect_with_nothing_pending_makes_the_requests_it_made_before_commands_existed(run: Any) -> None:
    from shared.platform.keys import device_key

    # Before the command feature a connect read the registry row, wrote the connected
    # index row and wrote the registry row back; the pending mark keeps it so.
    device, idle = run(bench.counted_connect(pending=False))
    key = device_key(device)
    assert [(method, path.rsplit("/", 1)[-1]) for method, path in idle.seen] == [
        ("GET", f"devices(PartitionKey='{key}',RowKey='registry')"),
        ("PATCH", f"devices(PartitionKey='~connected',RowKey='c{key}')"),
        ("PUT", f"devices(PartitionKey='{key}',RowKey='registry')"),
    ]
    assert not idle.to("/commands"), "no query of the commands table"

    # The same count sees a device with a pending command: its commands are read.
    _, waiting = run(bench.counted_connect(pending=True))
    assert waiting.to("/commands()") and len(waiting.seen) > len(idle.seen), waiting.seen


COMMAND_FIGURES = ("command_baseline_ms", "command_median_ms", "command_p99_ms", "command_overhead_ratio",
                   "commands_per_s", "lifecycle_connects_per_s_no_pending", "lifecycle_connects_per_s_with_pending")


@pytest.mark.usefixtures("app_env")
def test_a_tiny_round_of_the_command_figures_runs_against_the_broker_and_the_queue(
        run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.commands.fleet import INLINE_DEVICES

    # A fleet just past the inline part, so that its last commands go through the queue.
    for name, value in (("COMMAND_SENDS", 8), ("COMMAND_CHUNKS", 2), ("CONCURRENT_ROUNDS", 1), ("CONNECTS", 8),
                        ("CONNECT_CHUNKS", 2), ("FLEET_COMMAND_DEVICES", INLINE_DEVICES + 10)):
        monkeypatch.setattr(bench, name, value)
    figures = run(bench.command_figures())  # each part asserts its commands were sent or published
    for name in (*COMMAND_FIGURES, f"fleet_{INLINE_DEVICES + 10}_seconds"):
        assert isinstance(figures[name], float) and figures[name] > 0, (name, figures)
    assert figures["command_p99_ms"] >= figures["command_median_ms"]
    assert figures["command_overhead_ratio"] == pytest.approx(
        figures["command_median_ms"] / figures["command_baseline_ms"], rel=0.02)
    assert figures["connect_requests_no_pending"] == 3
    assert figures["connect_requests_with_pending"] > 3
