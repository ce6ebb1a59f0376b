"""Sending a command, end to end, and what moves it on afterwards: the device
connecting (queued commands), the expiry timer, a cancel.

A command is stored before it is published, so no publish goes unrecorded, and it
is published only by whoever moved it to ``sent``, a write conditional on its row's
ETag: a cancel, the expiry timer, or a second drain of the queue (Event Grid
delivers a connect event at least once, sometimes twice at the same moment) loses
that race cleanly, and the app publishes the command once at most (QoS 1 may still
deliver it twice). A failed publish makes it ``failed`` with the reason; a worker
that dies between the claim and the publish leaves it ``sent`` until it expires.

A device that is offline under ``OFFLINE_COMMAND_POLICY=queue`` gets a ``pending``
command and a mark on its registry row (``pendingCommands``), written conditionally
on the row the decision was made from: if the device connected in between, the mark
fails and the command is published at once. The connect event finds the mark and
drains the queue: the pending commands oldest first, then it clears the mark,
conditionally on the row it read before reading the queue. A command sent while the
queue drains (the device connected, the mark still set) joins the queue instead of
overtaking it, and touches the row (a conditional write), so the drain's clear fails
and it reads the queue again: the device gets its commands in the order they were
sent (a command sent while 200 waited had arrived 64th of 201).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from shared.commands import status as transitions
from shared.commands.jobs import sync_job_member
from shared.commands.models import TERMINAL, Command, CommandRequest
from shared.commands.settings import CommandSettings
from shared.commands.store import CommandStore, KeyConflict, new_command_id
from shared.lifecycle.models import DeviceRecord
from shared.lifecycle.registry import DeviceRegistry, Standing
from shared.platform import metrics
from shared.platform.concurrency import each
from shared.platform.errors import Conflict, Contention, NotFound, PublishRefused, Unavailable
from shared.platform.keys import validate_commandable_device_id
from shared.platform.rows import backoff
from shared.platform.settings import settings_of
from shared.platform.storage import DataStore, data_store
from shared.platform.timestamps import format_timestamp

log = logging.getLogger(__name__)
MAX_MARK_ATTEMPTS = 8
# A new command's outcome (metrics.COMMANDS_SENT): a failed publish is ``failed``.
OUTCOMES = {"sent": "published", "pending": "queued"}
EXPIRY_CONCURRENCY = 16  # as the fleet fan-out: 16 round trips in flight, far below any throttling


async def _follow_job(store: DataStore, command: Command | None) -> None:
    """A job's command copied to its member row, whose statuses are the job's counts."""
    if command is not None and command.job_id:
        await sync_job_member(store, command)


@dataclass(frozen=True)
class Sent:
    """The outcome of ``send_command``: the command, and whether it was made now
    (False: the idempotency key's original)."""

    command: Command
    created: bool


def command_topic(command: Command) -> str:
    return f"devices/{command.device_id}/commands/{command.name}"


def response_topic(command: Command) -> str:
    return f"devices/{command.device_id}/commands/{command.command_id}/response"


def publication(command: Command, now: datetime) -> Any:
    """What goes on the wire: the contract's topic, payload and MQTT v5 properties."""
    from shared.commands.transport import Publication

    payload = {"commandId": command.command_id, "name": command.name, "payload": command.payload,
               "issuedAt": format_timestamp(command.created_at), "expiresAt": format_timestamp(command.expires_at)}
    return Publication(
        topic=command_topic(command), payload=orjson.dumps(payload),
        expiry_seconds=max(1, int((command.expires_at - now).total_seconds())),
        response_topic=response_topic(command), correlation_data=command.command_id.encode(),
        user_properties=(("commandId", command.command_id),))


async def send_command(device_id: str, request: CommandRequest, *, idempotency_key: str | None, issued_by: str,
                       job_id: str | None = None, now: datetime | None = None) -> Sent:
    """Validate the device, store the command, publish it or queue it."""
    device_id = validate_commandable_device_id(device_id)
    settings = settings_of(CommandSettings)
    store = data_store()
    registry = DeviceRegistry(store)
    now = now or datetime.now(UTC)
    command = Command(command_id=new_command_id(now), device_id=device_id, name=request.name,
                      payload=request.payload, status="pending", created_at=now,
                      expires_at=now + timedelta(seconds=request.timeout_seconds),
                      idempotency_key=idempotency_key, job_id=job_id, issued_by=issued_by)
    # The command's index rows are harmless without it: written while the device is read.
    device, _ = await asyncio.gather(registry.standing(device_id), CommandStore(store).locate(command))
    if device is None:
        raise NotFound(f"no device {device_id!r} in the registry")
    if device.deleted:
        raise Conflict(f"device {device_id!r} is deleted")
    if device.state == "Disabled":
        raise Conflict(f"device {device_id!r} is disabled")
    if not device.connected and settings.offline_command_policy == "reject":
        raise Conflict(f"device {device_id!r} is offline and OFFLINE_COMMAND_POLICY is reject")
    if _route(device) == "publish":
        # Stored as sent, then published: one write instead of two. A worker that dies
        # in between leaves a command that says sent and expires on time; a failed
        # publish makes it failed (the publish comes after the write, so an answer
        # always finds the command).
        command = command.model_copy(update={"status": "sent", "sent_at": now})
    body = request.model_dump(mode="json", by_alias=True)
    try:
        command, created, etag = await CommandStore(store).create(command, body=body)
    except KeyConflict as exc:
        raise Conflict(str(exc)) from None
    if not created:
        return Sent(command, False)
    if command.status == "sent":
        sent = await publish(store, command, now, etag=etag)
    else:
        sent = await _publish_or_queue(store, command, now, etag)
    metrics.record(metrics.COMMANDS_SENT, 1, outcome=OUTCOMES.get(sent.status, sent.status))
    return Sent(sent, True)


Route = Literal["publish", "wait", "mark"]


def _route(device: Standing) -> Route:
    """Where a new command for ``device`` goes: ``publish`` at once (connected, no
    queue); ``wait`` in the queue, which the next connect drains (offline, marked);
    else queue it and ``mark`` the row: offline, or connected while its queue drains,
    where the conditional write tells the drain to read the queue again."""
    if device.connected and not device.pending_commands:
        return "publish"
    if not device.connected and device.pending_commands:
        return "wait"
    return "mark"


async def _publish_or_queue(store: DataStore, command: Command, now: datetime, etag: str | None) -> Command:
    """A stored ``pending`` command: published (if the device is connected and has no
    queue, read again now that the command is stored) or queued for the drain."""
    registry = DeviceRegistry(store)
    device = None
    for attempt in range(MAX_MARK_ATTEMPTS):
        device = await registry.standing(command.device_id)
        if device is None:
            break
        route = _route(device)
        if route == "publish":
            return await _publish_queued(store, command, now, etag=etag)
        if route == "wait" or await registry.set_pending_commands(command.device_id, True, device.etag):
            return command  # the device's next connect, or the drain under way, publishes it
        await backoff(attempt)
    if device is not None and device.pending_commands:
        # The row kept changing and is marked: a drain under way sees its clear fail
        # and reads the queue again (publishing here could overtake the queue).
        return command
    return await _publish_queued(store, command, now, etag=etag)  # try the device as it is


async def _publish_queued(store: DataStore, command: Command, now: datetime, *, etag: str | None = None) -> Command:
    """Claim a ``pending`` command and publish it; returns it as it now stands (not
    published by this call when it was not ``pending`` any more: cancelled, expired,
    or claimed by another publisher, which publishes it)."""
    claimed, won = await _claim(store, command, now, etag)
    if not won or claimed is None:
        return claimed or command
    await _follow_job(store, claimed)
    return await publish(store, claimed, now)


async def _claim(store: DataStore, command: Command, now: datetime, etag: str | None) -> tuple[Command | None, bool]:
    """``pending`` to ``sent``, conditionally on the row's ETag (known from the write or
    the query that gave the command, else read): whoever wins publishes."""
    return await CommandStore(store).change(command.device_id, command.command_id,
                                            functools.partial(transitions.sent, at=now),
                                            known=(command, etag) if etag else None)


async def publish(store: DataStore, command: Command, now: datetime, *, etag: str | None = None) -> Command:
    """Publish a command stored as ``sent`` (by the caller, who won that write); a
    failure makes it ``failed``, with the reason, and raises Unavailable (a retry may
    succeed) or PublishRefused (it cannot)."""
    from shared.commands.transport import PublishError
    from shared.commands.transports import transport

    try:
        await transport().publish(publication(command, now))
    except PublishError as exc:
        reason = exc.reason
        failed, _ = await CommandStore(store).change(command.device_id, command.command_id,
                                                     lambda c: transitions.publish_failed(c, reason, now),
                                                     known=(command, etag) if etag else None)
        await _follow_job(store, failed)
        log.warning("publishing command %s to %r failed: %s", command.command_id, command.device_id, reason)
        detail = (f"the command was stored but could not be published: {exc.reason} "
                  f"(command {command.command_id} is failed)")
        if exc.transient:
            raise Unavailable(detail, exc.retry_after) from None
        raise PublishRefused(detail) from None
    return command


async def deliver_pending(device_id: str, now: datetime | None = None) -> list[Command]:
    """Drain the device's queue when it connects: its pending commands oldest first,
    each claimed then published, the overdue ones expired, the ones sent before the
    client was created (again) ended as its delete would; then clear the mark,
    conditionally on the row read before the queue. A command queued meanwhile made
    that clear fail, so the queue is read again (as long as each reading finds some,
    and up to ``MAX_MARK_ATTEMPTS`` that find none). A command another publisher
    claimed first means another drain is under way: it goes on, in order, and this
    one stops. Returns what this drain published.

    A drain that cannot finish (the broker unreachable, the row changing without
    end) raises, so that Event Grid delivers the connect event again: a connected
    device whose mark stays would hold every new command in its queue."""
    with metrics.batch(durable=True):
        return await _drain(device_id, now)


async def _drain(device_id: str, now: datetime | None) -> list[Command]:
    store = data_store()
    registry, commands = DeviceRegistry(store), CommandStore(store)
    delivered: list[Command] = []
    fruitless = 0
    while fruitless < MAX_MARK_ATTEMPTS:
        device = await registry.standing(device_id)
        if device is None or not device.connected or not device.pending_commands:
            return delivered
        at = now or datetime.now(UTC)
        queue = await commands.pending(device_id)
        for command, etag in queue:
            moved, won = await commands.change(
                device_id, command.command_id,
                functools.partial(transitions.drained, at=at, created_on=device.created_on), known=(command, etag))
            if not won or moved is None:
                if moved is not None and moved.sent_at is not None:
                    return delivered  # another drain claimed it: that one goes on, in order
                continue  # cancelled or expired meanwhile: never published
            await _follow_job(store, moved)
            if moved.status != "sent":
                continue  # expired, or ended with its earlier incarnation
            # A refused command is failed, with the reason, and the next one may go out; an
            # Unavailable broker may take the rest later: it propagates, and Event Grid
            # delivers the connect again.
            with contextlib.suppress(PublishRefused):
                delivered.append(await publish(store, moved, at))
                metrics.record(metrics.DELIVERED_ON_CONNECT, 1)
        if await registry.set_pending_commands(device_id, False, device.etag):
            return delivered
        fruitless = 0 if queue else fruitless + 1
    raise Contention(f"the queue of device {device_id!r} could not be closed {MAX_MARK_ATTEMPTS} times")


async def follow_device(record: DeviceRecord) -> list[Command]:
    """What a life cycle event means for the device's queue (``client_lifecycle`` and
    the redrive call it after the registry write): a connected device's is drained, a
    deleted device's ended. A device without a queue costs nothing: the mark is on
    the row the event read anyway."""
    if not record.pending_commands:
        return []
    if record.device.deleted:
        return await end_queue(record.device.device_id)
    if record.device.connected:
        return await deliver_pending(record.device.device_id)
    return []


async def end_queue(device_id: str, now: datetime | None = None) -> list[Command]:
    """A deleted device's queue: each pending command ``cancelled``, reason ``device
    deleted`` (a factory-reset queued for a deleted client reached the client created
    again under its name), then the mark cleared if the row is as it was read. Only
    commands sent before the row said deleted: one sent later went to a client created
    again since. Returns the commands ended."""
    store = data_store()
    registry, commands = DeviceRegistry(store), CommandStore(store)
    device = await registry.standing(device_id)
    if device is None or not device.deleted or not device.pending_commands:
        return []
    at = now or datetime.now(UTC)
    ended: list[Command] = []
    for command, etag in await commands.pending(device_id):
        if command.created_at > at:
            continue
        result, changed = await commands.change(device_id, command.command_id,
                                                functools.partial(transitions.device_deleted, at=at),
                                                known=(command, etag))
        if changed and result is not None:
            ended.append(result)
            await _follow_job(store, result)
    # A row changed meanwhile keeps its mark: a later event or connect reads the queue again.
    await registry.set_pending_commands(device_id, False, device.etag)
    return ended


async def cancel_command(device_id: str, command_id: str, now: datetime | None = None) -> Command:
    now = now or datetime.now(UTC)
    store = data_store()
    command, changed = await CommandStore(store).change(device_id, command_id, lambda c: transitions.cancelled(c, now))
    if command is None:
        raise NotFound(f"no command {command_id} of device {device_id!r}")
    if not changed:
        raise Conflict(f"command {command_id} is already {command.status}")
    await _follow_job(store, command)
    return command


async def expire_due(now: datetime | None = None) -> list[Command]:
    """Expire the overdue ``pending`` and ``sent`` commands (the timer, every minute),
    ``EXPIRY_CONCURRENCY`` at once and each on its own: a due row that fails stays for
    the next run and never holds the others back (a fleet job of 1 500 devices with a
    short timeout is 1 500 due rows of about 4 requests each, 6 000 in one run)."""
    store = data_store()
    commands = CommandStore(store)
    now = now or datetime.now(UTC)
    expired: list[Command] = []

    async def one(due: tuple[str, str, str]) -> None:
        partition, device_id, command_id = due
        command, changed = await commands.change(device_id, command_id, lambda c: transitions.expired(c, now))
        if changed and command is not None:
            expired.append(command)
            await _follow_job(store, command)
        if command is None or command.status in TERMINAL:  # else due later this minute: the next run
            await commands.forget_due(partition, command_id)

    with metrics.batch(durable=True):
        await each(await commands.due(now), one, limit=EXPIRY_CONCURRENCY)
    return expired


def issued_by(headers: Any) -> str:
    """Who issued a request: the Entra principal App Service authentication reports,
    where the deployment says it guards the API (``TRUST_APP_SERVICE_AUTH``), else
    ``function-key``: a header a caller sent is never an identity."""
    import base64

    if settings_of(CommandSettings).trust_app_service_auth != "true":
        return "function-key"
    name = headers.get("x-ms-client-principal-name")
    if name:
        return str(name)[:256]
    encoded = headers.get("x-ms-client-principal")
    if encoded:
        try:
            principal = orjson.loads(base64.b64decode(encoded))
            for claim in principal.get("claims", []):
                value = claim.get("val")
                if claim.get("typ") in ("name", "preferred_username", "upn",
                                        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name") \
                        and isinstance(value, str) and value:
                    return value[:256]
            details = principal.get("userDetails")
            if isinstance(details, str) and details:
                return details[:256]
        except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
            pass
    return "function-key"
