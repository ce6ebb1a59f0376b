"""Sending a command, end to end, and what moves it on afterwards: the device
connecting (queued commands), the expiry timer, a cancel.

A command is stored before it is published, so no publish goes unrecorded; the
publish's outcome is then written conditionally (``sent``, or ``failed`` with the
reason). A device that is offline under ``OFFLINE_COMMAND_POLICY=queue`` gets a
``pending`` command and a mark on its registry row, written conditionally on the row
the decision was made from: if the device connected in between, the mark fails and
the command is published at once; if the mark is written first, the connect event
finds it and publishes the device's pending commands in creation order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.commands import status as transitions
from shared.commands.fleet import sync_job_member
from shared.commands.models import TERMINAL, Command, CommandRequest
from shared.commands.settings import CommandSettings
from shared.commands.store import CommandStore, KeyConflict, new_command_id
from shared.lifecycle.registry import DeviceRegistry
from shared.platform.http import HttpProblem, NotFound
from shared.platform.keys import validate_commandable_device_id
from shared.platform.settings import settings_of
from shared.platform.storage import DataStore, data_store
from shared.platform.timestamps import format_timestamp

log = logging.getLogger(__name__)
MAX_MARK_ATTEMPTS = 8


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
        raise HttpProblem(409, f"device {device_id!r} is deleted")
    if device.state == "Disabled":
        raise HttpProblem(409, f"device {device_id!r} is disabled")
    if not device.connected and settings.offline_command_policy == "reject":
        raise HttpProblem(409, f"device {device_id!r} is offline and OFFLINE_COMMAND_POLICY is reject")
    if device.connected:
        # Stored as sent, then published: one write instead of two. A worker that dies
        # in between leaves a command that says sent and expires on time; a failed
        # publish makes it failed (the publish comes after the write, so an answer
        # always finds the command).
        command = command.model_copy(update={"status": "sent", "sent_at": now})
    body = request.model_dump(mode="json", by_alias=True)
    try:
        command, created, etag = await CommandStore(store).create(command, body=body)
    except KeyConflict as exc:
        raise HttpProblem(409, str(exc)) from None
    if not created:
        return Sent(command, False)
    if command.status == "sent":
        return Sent(await publish(store, command, now, etag=etag), True)
    return Sent(await _publish_or_queue(store, command, now), True)


async def _publish_or_queue(store: DataStore, command: Command, now: datetime) -> Command:
    registry = DeviceRegistry(store)
    for _ in range(MAX_MARK_ATTEMPTS):
        device = await registry.standing(command.device_id)
        if device is None:
            break
        if device.connected:
            return await publish(store, command, now)
        if device.pending_commands or await registry.set_pending_commands(command.device_id, True, device.etag):
            return command  # the device's next connect publishes it
    return await publish(store, command, now)  # the row kept changing: try the device as it is


async def publish(store: DataStore, command: Command, now: datetime, *, etag: str | None = None) -> Command:
    """Publish a stored command and record the outcome: ``sent``, or ``failed`` and a
    502/503 problem (the command is kept, with the reason)."""
    from shared.commands.transport import PublishError, transport

    commands = CommandStore(store)
    try:
        await transport().publish(publication(command, now))
    except PublishError as exc:
        reason = exc.reason
        failed, _ = await commands.change(command.device_id, command.command_id,
                                          lambda c: transitions.publish_failed(c, reason, now),
                                          known=(command, etag) if etag else None)
        await _follow_job(store, failed)
        log.warning("publishing command %s to %r failed: %s", command.command_id, command.device_id, reason)
        status = 503 if exc.transient else 502
        headers = {"Retry-After": str(exc.retry_after or 5)} if exc.transient else None
        raise HttpProblem(status, f"the command was stored but could not be published: {exc.reason} "
                                  f"(command {command.command_id} is failed)", headers=headers) from None
    if command.status == "sent":
        return command  # recorded as sent before the publish
    result, _ = await commands.change(command.device_id, command.command_id, lambda c: transitions.sent(c, now),
                                      known=(command, etag) if etag else None)
    await _follow_job(store, result)
    return result or command


async def deliver_pending(device_id: str, now: datetime | None = None) -> list[Command]:
    """Publish the device's pending commands, oldest first, skipping (and expiring)
    the overdue ones, then clear the mark: called when the device connects."""
    store = data_store()
    registry, commands = DeviceRegistry(store), CommandStore(store)
    delivered: list[Command] = []
    for _ in range(MAX_MARK_ATTEMPTS):
        device = await registry.standing(device_id)
        if device is None or not device.connected or not device.pending_commands:
            return delivered
        at = now or datetime.now(UTC)
        for command in await commands.pending(device_id):
            if command.expires_at <= at:
                expired, _ = await commands.change(device_id, command.command_id,
                                                   functools.partial(transitions.expired, now=at))
                await _follow_job(store, expired)
                continue
            try:
                delivered.append(await publish(store, command, at))
            except HttpProblem:
                return delivered  # recorded as failed; the mark stays for the next connect
        if await registry.set_pending_commands(device_id, False, device.etag):
            return delivered
    return delivered


async def cancel_command(device_id: str, command_id: str, now: datetime | None = None) -> Command:
    now = now or datetime.now(UTC)
    store = data_store()
    command, changed = await CommandStore(store).change(device_id, command_id, lambda c: transitions.cancelled(c, now))
    if command is None:
        raise NotFound(f"no command {command_id} of device {device_id!r}")
    if not changed:
        raise HttpProblem(409, f"command {command_id} is already {command.status}")
    await _follow_job(store, command)
    return command


async def expire_due(now: datetime | None = None) -> list[Command]:
    """Expire the overdue ``pending`` and ``sent`` commands (the timer, every minute)."""
    store = data_store()
    commands = CommandStore(store)
    now = now or datetime.now(UTC)
    expired = []
    for partition, device_id, command_id in await commands.due(now):
        command, changed = await commands.change(device_id, command_id, lambda c: transitions.expired(c, now))
        if changed and command is not None:
            expired.append(command)
            await _follow_job(store, command)
        if command is None or command.status in TERMINAL:  # else due later this minute: the next run
            await commands.forget_due(partition, command_id)
    return expired


def issued_by(headers: Any) -> str:
    """Who issued a request: the Entra principal App Service authentication reports,
    else ``function-key``."""
    import base64

    name = headers.get("x-ms-client-principal-name")
    if name:
        return str(name)[:256]
    encoded = headers.get("x-ms-client-principal")
    if encoded:
        try:
            principal = orjson.loads(base64.b64decode(encoded))
            for claim in principal.get("claims", []):
                if claim.get("typ") in ("name", "preferred_username", "upn",
                                        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"):
                    return str(claim.get("val"))[:256]
            if principal.get("userDetails"):
                return str(principal["userDetails"])[:256]
        except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
            pass
    return "function-key"
