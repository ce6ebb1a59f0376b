"""How a command's status may change: pure functions.

``pending`` (accepted, the device offline) -> ``sent`` -> ``succeeded`` | ``failed`` |
``rejected`` (the device's answer); ``pending`` or ``sent`` -> ``expired`` (its
timeout passed without an answer) or ``cancelled`` (an operator) or ``failed`` (the
publish failed). The last five are terminal and never change; a device's answer
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
