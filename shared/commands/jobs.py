"""A fleet job's member rows (the ``fleetjobs`` layout is in :mod:`shared.commands.fleet`),
kept below both the fan-out and a command's later changes (``service``, ``responses``),
which each update them.
"""

from __future__ import annotations

from typing import Any

from shared.commands.models import Command
from shared.platform.keys import device_key
from shared.platform.rows import merge_row
from shared.platform.storage import DataStore
from shared.platform.storage_names import FLEET_JOBS_TABLE


def member_row(device_id: str) -> str:
    return "m|" + device_key(device_id)


_STAGE = {"queued": 0, "pending": 1, "sent": 2}  # any other status is final


def _stage(status: str | None) -> int:
    return -1 if status is None else _STAGE.get(status, 3)


async def set_member(store: DataStore, job_id: str, device_id: str, row: dict[str, Any]) -> None:
    """A member row moved forward to ``row``, never back: writers race (the fan-out
    records ``sent`` while the answer records ``succeeded``), so the write is
    conditional on the row it read, and a row already as far along is left alone."""
    def forward(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is not None and _stage(current.get("status")) >= _stage(row["status"]):
            return None
        return {"deviceId": device_id, **row}

    await merge_row(store, FLEET_JOBS_TABLE, job_id, member_row(device_id), forward)


async def sync_job_member(store: DataStore, command: Command) -> None:
    """Copy a job command's status to its member row (forward only)."""
    assert command.job_id is not None
    await set_member(store, command.job_id, command.device_id,
                     {"commandId": command.command_id, "status": command.status})
