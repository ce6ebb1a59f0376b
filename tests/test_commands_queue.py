"""An offline device's queue of commands: kept in order until it connects, drained
once however the connect events, cancels, new commands, a broker cut and a delete
and re-creation of the client come; and what sending and draining cost in storage
requests."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from standins import event_factory as ev
from standins.edge import Device, ResponseRouter
from standins.services import Mosquitto
from tests.support import commands
from tests.support.commands import command, online, registered, send
from tests.support.harness import changed_settings, deliver, http_request, json_of, user_function

# The fixtures the command tests share (tests/support/commands.py), by name.
transport, router = commands.transport, commands.router


def test_commands_for_an_offline_device_wait_and_go_out_in_order_when_it_connects(
        run: Any, mosquitto: Mosquitto, router: ResponseRouter, transport: str) -> None:
    device = Device(registered(run), mosquitto.url)
    first = json_of(send(run, device.device_id, {"name": "first"}))
    short = json_of(send(run, device.device_id, {"name": "short", "timeoutSeconds": 1}))
    dropped = json_of(send(run, device.device_id, {"name": "dropped"}))
    last = json_of(send(run, device.device_id, {"name": "last"}))
    assert {c["status"] for c in (first, short, dropped, last)} == {"pending"}
    cancel = run(user_function("cancel_command")(http_request(
        "POST", "cancel", route_params={"deviceId": device.device_id, "commandId": dropped["commandId"]})))
    assert json_of(cancel)["status"] == "cancelled"
    time.sleep(1.2)  # "short" is overdue by now
    device.connect()  # subscribe first, then the broker reports the session
    try:
        deliver(run, ev.connected(device.device_id, 1, datetime.now(UTC)))
        received = device.wait_for(2)
        time.sleep(0.3)
        assert [r.payload["name"] for r in device.commands] == ["first", "last"], "in order, none skipped twice"
        assert run(router.deliver(expect=2)) == 2
        statuses = {c["name"]: command(run, device.device_id, c["commandId"])["status"]
                    for c in (first, short, dropped, last)}
        assert statuses == {"first": "succeeded", "short": "expired", "dropped": "cancelled", "last": "succeeded"}
        assert len(received) == 2
        deliver(run, ev.disconnected(device.device_id, 1, datetime.now(UTC)),
                ev.connected(device.device_id, 2, datetime.now(UTC)))
        time.sleep(0.3)
        assert len(device.commands) == 2, "a later connect publishes nothing again"
    finally:
        device.disconnect()


def queued(run: Any, mosquitto: Mosquitto, count: int) -> tuple[Device, list[dict[str, Any]]]:
    """A registered device that has not connected yet, ``count`` commands waiting for it."""
    device = Device(registered(run), mosquitto.url, behaviour="silent")
    return device, [json_of(send(run, device.device_id, {"name": f"c{n:03d}"})) for n in range(count)]


def received_ids(device: Device, count: int) -> list[str]:
    """The command ids the device received, once ``count`` came and nothing more for 0.5 s."""
    device.wait_for(count)
    time.sleep(0.5)
    return [r.payload["commandId"] for r in device.commands]


def test_a_cancel_while_the_queue_drains_keeps_its_command_from_the_device(run: Any, mosquitto: Mosquitto,
                                                                           app_env: Any) -> None:
    import asyncio

    device, commands = queued(run, mosquitto, 120)
    device.connect()
    try:
        async def connect_and_cancel() -> None:
            drain = asyncio.ensure_future(
                user_function("client_lifecycle")(ev.connected(device.device_id, 1, datetime.now(UTC))))
            while len(device.commands) < 5:  # the drain has read the queue  # noqa: ASYNC110 - a paho thread fills it
                await asyncio.sleep(0.005)
            await asyncio.gather(*(user_function("cancel_command")(http_request(
                "POST", "x", route_params={"deviceId": device.device_id, "commandId": c["commandId"]}))
                for c in commands[40:]))
            await drain

        run(connect_and_cancel())
        final = {c["commandId"]: command(run, device.device_id, c["commandId"]) for c in commands}
        unsent = {cid for cid, c in final.items() if c["status"] == "cancelled" and "sentAt" not in c}
        got = received_ids(device, len(commands) - len(unsent))
        assert unsent, "some cancels came before the drain reached their command"
        assert not unsent & set(got), "a command cancelled while pending never reaches the device"
        assert got == [c["commandId"] for c in commands if c["commandId"] not in unsent], "each once, in order"
        assert all("sentAt" in final[cid] for cid in got)
    finally:
        device.disconnect()


def test_one_connect_event_delivered_twice_at_once_publishes_each_command_once_in_order(
        run: Any, mosquitto: Mosquitto, app_env: Any) -> None:
    import asyncio

    device, commands = queued(run, mosquitto, 100)
    device.connect()
    try:
        event = ev.connected(device.device_id, 1, datetime.now(UTC))

        async def twice() -> None:
            await asyncio.gather(*(user_function("client_lifecycle")(event) for _ in range(2)))

        run(twice())
        assert received_ids(device, 100) == [c["commandId"] for c in commands]
        assert {command(run, device.device_id, c["commandId"])["status"] for c in commands} == {"sent"}
    finally:
        device.disconnect()


def test_commands_sent_while_the_queue_drains_arrive_after_the_queued_ones(run: Any, mosquitto: Mosquitto,
                                                                           app_env: Any) -> None:
    import asyncio

    device, commands = queued(run, mosquitto, 150)
    device.connect()
    try:
        async def connect_and_send() -> list[dict[str, Any]]:
            drain = asyncio.ensure_future(
                user_function("client_lifecycle")(ev.connected(device.device_id, 1, datetime.now(UTC))))
            later: list[dict[str, Any]] = []
            while not drain.done() or len(later) < 3:
                response = await user_function("send_command")(http_request(
                    "POST", "x", route_params={"deviceId": device.device_id}, body={"name": f"later{len(later)}"}))
                later.append(json_of(response))
            await drain
            return later

        later = run(connect_and_send())
        assert any(c["status"] == "pending" for c in later), "some came while the queue drained"
        everything = [c["commandId"] for c in commands + later]
        assert received_ids(device, len(everything)) == everything, "in the order they were sent"
    finally:
        device.disconnect()


def test_a_drain_the_broker_cuts_short_fails_the_event_so_that_event_grid_delivers_it_again(
        run: Any, mosquitto: Mosquitto, app_env: Any) -> None:
    """The mark must not stay on a connected device with nobody draining: commands sent
    to it join its queue, so they would wait for its next connect."""
    from shared.commands.transports import reset_transport
    from standins.invoke import FunctionFailed
    from standins.services import free_port

    device, commands = queued(run, mosquitto, 5)
    device.connect()
    event = ev.connected(device.device_id, 1, datetime.now(UTC))
    try:
        with changed_settings(run, {"MQTT_BROKER_URL": f"mqtt://127.0.0.1:{free_port()}"}):
            run(reset_transport())
            with pytest.raises(FunctionFailed, match="could not be published"):
                deliver(run, event)
            run(reset_transport())
        assert command(run, device.device_id, commands[0]["commandId"])["status"] == "failed"
        later = json_of(send(run, device.device_id, {"name": "later"}))
        assert later["status"] == "pending", "behind the queue"
        deliver(run, event)  # Event Grid's redelivery
        assert received_ids(device, 5) == [c["commandId"] for c in commands[1:]] + [later["commandId"]]
    finally:
        device.disconnect()


def test_a_delete_ends_the_queue_so_a_client_created_again_under_the_name_gets_none_of_it(
        run: Any, mosquitto: Mosquitto, app_env: Any) -> None:
    device = Device(registered(run), mosquitto.url, behaviour="silent")
    reset = json_of(send(run, device.device_id, {"name": "factory-reset"}))
    deleted_at = datetime.now(UTC)
    deliver(run, ev.deleted(device.device_id, deleted_at))
    ended = command(run, device.device_id, reset["commandId"])
    assert (ended["status"], ended["error"], "completedAt" in ended) == ("cancelled", {"reason": "device deleted"},
                                                                         True)
    time.sleep(0.01)
    again = datetime.now(UTC)  # the client created again, then a command for it
    deliver(run, ev.created_or_updated(device.device_id, again, created_on=again))
    fresh = json_of(send(run, device.device_id, {"name": "hello"}))
    device.connect()
    try:
        deliver(run, ev.connected(device.device_id, 1, datetime.now(UTC)))
        assert received_ids(device, 1) == [fresh["commandId"]], "the new client gets its own command only"
        assert command(run, device.device_id, reset["commandId"])["status"] == "cancelled"
    finally:
        device.disconnect()


def test_a_queue_of_an_earlier_incarnation_is_ended_whatever_order_the_events_come_in(
        run: Any, mosquitto: Mosquitto, app_env: Any) -> None:
    """Event Grid keeps no order: the new client's creation and its connect may come
    before the old one's delete."""
    device = Device(registered(run), mosquitto.url, behaviour="silent")
    reset = json_of(send(run, device.device_id, {"name": "factory-reset"}))
    deleted_at = datetime.now(UTC)
    time.sleep(0.01)
    again = datetime.now(UTC)
    deliver(run, ev.created_or_updated(device.device_id, again, created_on=again))
    fresh = json_of(send(run, device.device_id, {"name": "hello"}))
    device.connect()
    try:
        deliver(run, ev.connected(device.device_id, 1, datetime.now(UTC)))
        assert received_ids(device, 1) == [fresh["commandId"]]
        ended = command(run, device.device_id, reset["commandId"])
        assert (ended["status"], ended["error"]) == ("cancelled", {"reason": "device deleted"})
        deliver(run, ev.deleted(device.device_id, deleted_at))  # the delete, last
        assert command(run, device.device_id, fresh["commandId"])["status"] == "sent"
    finally:
        device.disconnect()


def test_what_sending_and_draining_cost_in_storage_requests(
        run: Any, mosquitto: Mosquitto, app_env: Any) -> None:
    """The hot path, 3: the device's row read while the due index row is written, then
    the command stored as sent (then published). A queued command reads the row again
    once stored and marks it (5; 4 when marked already). A drain: the row, the queue,
    one conditional write per command (which claims it), the mark cleared."""
    from tests.support.harness import storage_requests

    def entities(seen: list[tuple[str, str]]) -> list[tuple[str, str]]:  # not the tables' creation
        return sorted((method, path.split("(")[0].rsplit("/", 1)[-1]) for method, path in seen
                      if not path.endswith("/Tables"))

    device = online(run, mosquitto, "silent")
    try:
        with storage_requests(run) as hot:
            assert json_of(send(run, device.device_id, {"name": "x"}))["status"] == "sent"
        assert entities(hot.seen) == [("GET", "devices"), ("PATCH", "commands"), ("POST", "commands")]
    finally:
        device.disconnect()
    asleep = registered(run)
    with storage_requests(run) as first:
        assert json_of(send(run, asleep, {"name": "x"}))["status"] == "pending"
    assert entities(first.seen) == [("GET", "devices"), ("GET", "devices"), ("PATCH", "commands"),
                                    ("PATCH", "devices"), ("POST", "commands")]
    with storage_requests(run) as second:
        assert json_of(send(run, asleep, {"name": "y"}))["status"] == "pending"
    assert entities(second.seen) == [("GET", "devices"), ("GET", "devices"), ("PATCH", "commands"),
                                     ("POST", "commands")], "marked already: nothing to write"
    with storage_requests(run) as drain:  # one write per queued command claims it
        deliver(run, ev.connected(asleep, 1, datetime.now(UTC)))
    assert entities(drain.seen) == [("GET", "commands"), ("GET", "devices"), ("GET", "devices"),
                                    ("PATCH", "devices"), ("PATCH", "devices"), ("PUT", "commands"),
                                    ("PUT", "commands"), ("PUT", "devices")]
