"""How a command's status may change: pure functions.

``pending`` (accepted, the device offline) -> ``sent`` -> ``succeeded`` | ``failed`` |
``rejected`` (the device's answer); ``pending`` or ``sent`` -> ``expired`` (its
timeout passed without an answer) or ``cancelled`` (an operator) or ``failed`` (the
publish failed). ``pending`` -> ``cancelled`` also when the device is deleted (its
queue belonged to that client). The last five are terminal and never change; a device's answer
that comes after one of them is kept as ``lateResponse`` and changes nothing else.
Each function returns the command after the change, or None when the change does
not apply (a duplicate, or a race lost to another transition), so a caller writes
only real changes, conditionally on the row's ETag.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.commands.models import TERMINAL, Command, LateResponse, ResponseStatus


def sent(command: Command, at: datetime) -> Command | None:
    if command.status != "pending":
        return None
    return command.model_copy(update={"status": "sent", "sent_at": at})


def publish_failed(command: Command, reason: str, at: datetime) -> Command | None:
    if command.status not in ("pending", "sent"):
        return None
    return command.model_copy(update={"status": "failed", "error": {"reason": reason}, "completed_at": at})


def cancelled(command: Command, at: datetime) -> Command | None:
    if command.status in TERMINAL:
        return None
    return command.model_copy(update={"status": "cancelled", "completed_at": at})


DEVICE_DELETED = {"reason": "device deleted"}


def device_deleted(command: Command, at: datetime) -> Command | None:
    """A queued command of a client that was deleted: it can reach no one, and must
    not reach a client created again under the same name. A ``sent`` one is left to
    its answer or expiry: the client may have carried it out."""
    if command.status != "pending":
        return None
    return command.model_copy(update={"status": "cancelled", "error": DEVICE_DELETED, "completed_at": at})


def drained(command: Command, at: datetime, created_on: datetime | None) -> Command | None:
    """A queued command as the drain moves it on when the device connects: ``expired``
    when overdue; ``cancelled`` as ``device_deleted`` when it was sent before the
    client was created (``created_on``), so to a client deleted since, whose delete
    may not have come yet (Event Grid keeps no order); else ``sent``, to be published.
    None when it is not queued any more."""
    if command.status != "pending":
        return None
    if command.expires_at <= at:
        return expired(command, at)
    if created_on is not None and command.created_at < created_on:
        return device_deleted(command, at)
    return sent(command, at)


def expired(command: Command, now: datetime) -> Command | None:
    if command.status in TERMINAL or command.expires_at > now:
        return None
    return command.model_copy(update={"status": "expired", "completed_at": now})


def answered(command: Command, status: ResponseStatus, result: Any, error: Any, at: datetime) -> Command | None:
    """The device's answer: it completes a waiting command; after a terminal status
    it is kept as the late response (the first one; duplicates change nothing)."""
    if command.status in TERMINAL:
        if command.late_response is not None or (command.completed_at is not None and command.result == result \
                and command.error == error and command.status == status):
            return None  # already recorded, or this answer is the one that completed it
        return command.model_copy(update={"late_response": LateResponse(status=status, received_at=at,
                                                                         result=result, error=error)})
    return command.model_copy(update={"status": status, "result": result, "error": error, "completed_at": at,
                                      "sent_at": command.sent_at or at})
