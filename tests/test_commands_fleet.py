"""Fleet jobs: a command to many devices by id or by attribute, fanned out through
the queue in chunks, its counts following every member's command to its end; the
target and job ids checked as documented."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from standins import event_factory as ev
from standins.edge import Device, ResponseRouter
from standins.services import Mosquitto
from tests.support import commands
from tests.support.commands import T0, fleet, job, online, registered
from tests.support.harness import deliver, http_request, json_of, user_function

# The fixtures the command tests share (tests/support/commands.py), by name.
transport, router = commands.transport, commands.router


def test_a_fleet_job_of_50_devices_tracks_every_command(run: Any, mosquitto: Mosquitto, router: ResponseRouter,
                                                         transport: str) -> None:
    devices = [online(run, mosquitto, "succeed" if n % 3 else "reject") for n in range(30)]
    offline = [registered(run) for _ in range(20)]
    try:
        response = fleet(run, {"name": "update", "payload": {"v": 2},
                               "target": {"deviceIds": [d.device_id for d in devices] + offline + ["nobody"]}})
        assert response.status_code == 202, response.get_body()
        created = json_of(response)
        assert created["total"] == 51 and created["fanout"] == "done"
        for device in devices:
            device.wait_for(1)
        assert run(router.deliver(expect=30)) == 30
        counts = job(run, created["jobId"])["counts"]
        assert counts == {"succeeded": 20, "rejected": 10, "pending": 20, "failed": 1}
        again = fleet(run, {"name": "update", "target": {"deviceIds": ["nobody"]}})
        assert json_of(again)["counts"] == {"failed": 1}
    finally:
        for device in devices:
            device.disconnect()


def test_a_fleet_jobs_counts_follow_its_commands_that_expire_are_cancelled_or_go_out_on_connect(
        run: Any, mosquitto: Mosquitto, transport: str) -> None:
    silent = online(run, mosquitto, "silent")
    asleep, wakes = registered(run), Device(registered(run), mosquitto.url, behaviour="silent")
    try:
        short = json_of(fleet(run, {"name": "probe", "timeoutSeconds": 1,
                                    "target": {"deviceIds": [silent.device_id]}}))
        waiting = json_of(fleet(run, {"name": "update", "target": {"deviceIds": [asleep, wakes.device_id]}}))
        assert (short["counts"], waiting["counts"]) == ({"sent": 1}, {"pending": 2})
        [queued] = json_of(run(user_function("list_commands")(http_request(
            "GET", "x", route_params={"deviceId": asleep}))))["items"]
        cancelled = run(user_function("cancel_command")(http_request(
            "POST", "x", route_params={"deviceId": asleep, "commandId": queued["commandId"]})))
        assert cancelled.status_code == 200
        wakes.connect()
        deliver(run, ev.connected(wakes.device_id, 1, T0 + timedelta(minutes=1)))  # its queue goes out
        wakes.wait_for(1)
        silent.wait_for(1)
        time.sleep(1.2)
        run(user_function("command_expiry")(None))
        assert job(run, short["jobId"])["counts"] == {"expired": 1}
        assert job(run, waiting["jobId"])["counts"] == {"cancelled": 1, "sent": 1}
    finally:
        silent.disconnect()
        wakes.disconnect()


def test_a_fleet_jobs_member_row_never_moves_back_when_the_fan_outs_write_comes_after_the_answer(
        run: Any, mosquitto: Mosquitto, router: ResponseRouter, transport: str) -> None:
    """The fan-out records a command sent after publishing it; the device's answer may be
    recorded first. The late "sent" must not undo "succeeded" in the job's counts."""
    from shared.commands.jobs import sync_job_member
    from shared.commands.models import Command
    from shared.platform.storage import data_store

    device = online(run, mosquitto, "succeed")
    try:
        created = json_of(fleet(run, {"name": "update", "target": {"deviceIds": [device.device_id]}}))
        device.wait_for(1)
        assert run(router.deliver(expect=1)) == 1
        assert job(run, created["jobId"])["counts"] == {"succeeded": 1}
        [answered] = json_of(run(user_function("list_commands")(http_request(
            "GET", "x", route_params={"deviceId": device.device_id}))))["items"]
        late = Command.model_validate(answered | {"status": "sent", "result": None, "completedAt": None})
        run(sync_job_member(data_store(), late))  # the fan-out's write, arriving last
        assert job(run, created["jobId"])["counts"] == {"succeeded": 1}
    finally:
        device.disconnect()


def test_a_fleet_job_of_2000_devices_by_attribute_continues_through_the_queue(run: Any, app_env: Any) -> None:
    import asyncio

    from standins.invoke import drain_queue

    line = f"line-{uuid.uuid4().hex[:6]}"
    handler = user_function("client_lifecycle")
    events = [ev.created_or_updated(f"{line}-{n:04d}", T0, attributes={"line": line, "type": "camera"})
              for n in range(2000)]
    events.append(ev.created_or_updated(f"{line}-other", T0, attributes={"line": line, "type": "plc"}))

    async def register() -> None:
        for i in range(0, len(events), 64):
            await asyncio.gather(*(handler(e) for e in events[i:i + 64]))

    run(register())
    response = fleet(run, {"name": "snapshot", "target": {"attributes": {"line": line, "type": "camera"}}})
    assert response.status_code == 202, response.get_body()
    created = json_of(response)
    assert created["total"] == 2000 and created["fanout"] == "running"
    assert created["counts"]["queued"] == 2000 - 200, "the 202 did not wait for the whole fleet"
    handled = run(drain_queue("fleet-fanout", "fleet_fanout"))
    assert handled == 18
    done = job(run, created["jobId"])
    assert done["counts"] == {"pending": 2000} and done["fanout"] == "done"


@pytest.mark.parametrize("job_id, status", [
    ("a/b", 400), ("a\\b", 400), ("a#b", 400), ("x" * 2000, 400), ("job", 400),
    ("4d7e1a0c-2b8f-4f3e-9c1d-5a6b7c8d9e0f", 404), ("4D7E1A0C-2B8F-4F3E-9C1D-5A6B7C8D9E0F", 404),
])
def test_a_job_id_that_was_never_issued_is_404_and_a_malformed_one_400_at_once(
        run: Any, app_env: Any, job_id: str, status: int) -> None:
    started = time.monotonic()
    response = run(user_function("get_fleet_command")(http_request("GET", "x", route_params={"jobId": job_id})))
    assert response.status_code == status, response.get_body()
    if status == 400:
        assert json_of(response)["errors"][0]["loc"] == ["path", "jobId"]
    assert time.monotonic() - started < 2, "answered at once, never a retry"


@pytest.mark.parametrize("device_ids, index, detail", [
    (["ok", ""], 1, "non-empty"),
    (["x" * 129], 0, "longer than 128"),
    (["ok", "x" * 510], 1, "longer than 128"),
    (["a/b"], 0, "cannot be commanded"),
    (["ok", "ok", "a+b"], 2, "cannot be commanded"),
])
def test_a_fleet_jobs_device_ids_are_checked_as_everywhere_else(run: Any, app_env: Any, device_ids: list[str],
                                                                 index: int, detail: str) -> None:
    response = fleet(run, {"name": "x", "target": {"deviceIds": device_ids}})
    assert response.status_code == 400, response.get_body()
    problem = json_of(response)
    assert problem["errors"][0]["loc"] == ["body", "target", "deviceIds", index] and detail in problem["detail"]
    assert repr(device_ids[index][:64]).strip("'") in problem["detail"], "the id is named"


def _fleet_ids() -> Any:
    from hypothesis import strategies as st

    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=130)
    return st.lists(st.one_of(text, st.sampled_from(["", "nobody", "x" * 128, "x" * 129, "~7E", "m|", "a'b", "a/b"])),
                    min_size=1, max_size=8)


def test_a_fleet_jobs_counts_always_add_up_to_its_total(run: Any, app_env: Any) -> None:
    """Any list of ids: a 400 when one of them cannot be commanded, else a job whose
    counts add up to its total (an empty id made a member row the counts never read)."""
    import re

    from hypothesis import HealthCheck, given, settings

    known = registered(run)

    @given(_fleet_ids())
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def check(device_ids: list[str]) -> None:
        response = fleet(run, {"name": "x", "target": {"deviceIds": [*device_ids, known]}})
        if any(not 1 <= len(d) <= 128 or re.search(r"[/+#\x00-\x1f\x7f-\x9f]", d) for d in device_ids):
            assert response.status_code == 400, response.get_body()
            return
        assert response.status_code == 202, response.get_body()
        created = json_of(response)
        assert created["total"] == len(set(device_ids) | {known})
        assert sum(job(run, created["jobId"])["counts"].values()) == created["total"]

    check()


def test_a_fleet_job_is_done_only_once_every_chunk_is_whatever_order_they_run_in(run: Any, app_env: Any) -> None:
    from standins.invoke import drain_queue

    ghosts = [f"ghost-{uuid.uuid4().hex[:6]}-{n:03d}" for n in range(450)]
    created = json_of(fleet(run, {"name": "x", "target": {"deviceIds": ghosts}}))
    assert (created["counts"], created["fanout"]) == ({"failed": 200, "queued": 250}, "running")
    assert run(drain_queue("fleet-fanout", "fleet_fanout", max_messages=1, last_first=True)) == 1  # the last chunk
    after_last = job(run, created["jobId"])
    assert (after_last["counts"], after_last["fanout"]) == ({"failed": 250, "queued": 200}, "running")
    run(drain_queue("fleet-fanout", "fleet_fanout"))
    done = job(run, created["jobId"])
    assert (done["counts"], done["fanout"]) == ({"failed": 450}, "done")


@pytest.mark.usefixtures("app_env")
@pytest.mark.parametrize("target", [{}, {"deviceIds": None, "attributes": {"group": "a"}},
                                    {"deviceIds": ["d"], "attributes": {"group": "a"}}, {"deviceIds": None}])
def test_a_fleet_target_names_exactly_one_of_device_ids_and_attributes_in_the_schema_too(
        run: Any, target: dict[str, Any]) -> None:
    import jsonschema

    from shared.meta.openapi import openapi_document

    response = fleet(run, {"name": "x", "target": target})
    assert response.status_code == 400 and "exactly one of deviceIds and attributes" in response.get_body().decode()
    document = openapi_document()
    schema = {**document["components"]["schemas"]["FleetTargetInput"], "components": document["components"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(target, schema)
