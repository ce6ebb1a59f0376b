"""Devices' answers to commands, from the ``command-responses`` hub.

Each body goes through the streams' envelopes (a routed CloudEvent, a plain
message, an array), then one model: ``{"commandId", "status": "succeeded" |
"failed" | "rejected", "result"?, "error"?}``. The device comes from the topic
``devices/{deviceId}/commands/{commandId}/response``, which the broker
authenticates; the command is found under that device by the topic's command id
(and the payload's, which must agree), so an answer for another device's command
is not found and is rejected as spoofed, like one for a command never sent; both,
and malformed answers, are dead-lettered like stream messages. An answer completes
a ``pending`` or ``sent`` command; after a terminal status it is kept as ``lateResponse``; a duplicate changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shared.commands import status as transitions
from shared.commands.jobs import sync_job_member
from shared.commands.models import CommandResponse
from shared.commands.store import CommandStore, command_row
from shared.platform import metrics
from shared.platform.errors import InvalidInput, validate
from shared.platform.rows import MAX_JSON_DEPTH, nests_deeper
from shared.platform.storage import DataStore, data_store
from shared.streams.batch import Origin, dead_letter, give_up, last_attempt, origin_of, partition_context
from shared.streams.decode import Rejected
from shared.streams.envelopes import dump_json, unwrap_body
from shared.streams.limits import DEFAULT_LIMITS

log = logging.getLogger(__name__)
STREAM = "command-responses"


async def handle_responses(events: Sequence[Any], *, retry_count: int = 0, max_retry_count: int = 0) -> int:
    """Apply a batch of answers; returns how many changed a command. Any failure, a
    bad setting included, fails the invocation for the host to retry, except on the
    last attempt, which dead-letters the batch and never raises."""
    from shared.platform.settings import settings_of
    from shared.streams.settings import StreamSettings

    now = datetime.now(UTC)
    hub: str | None = None
    changed = 0
    if retry_count:
        metrics.record(metrics.RETRIED, 1, stream=STREAM)
    try:
        context = partition_context(events)
        hub = str(context.get("EventHubName") or settings_of(StreamSettings).command_responses_hub_name)
        partition = str(context.get("PartitionId", "0"))
        store = data_store()
        with metrics.batch():
            for event in sorted(events, key=lambda e: e.sequence_number or 0):
                changed += await _one(store, origin_of(event, hub=hub, partition=partition, now=now),
                                      event.get_body(), now)
    except Exception as exc:
        if not last_attempt(retry_count, max_retry_count):
            raise
        await give_up(STREAM, events, exc, hub=hub, now=now)
    return changed


async def _one(store: DataStore, origin: Origin, body: bytes, now: datetime) -> int:
    try:
        messages = unwrap_body(body, "response", DEFAULT_LIMITS)
    except InvalidInput as exc:
        await _dead_letter(store, origin, Rejected(exc.reason, exc.errors, body), now)
        return 0
    changed = 0
    for index, raw in enumerate(messages):
        try:
            changed += await _answer(store, raw, now)
        except InvalidInput as exc:
            # An element again as written: numbers beyond 64 bits kept, any nesting orjson reads.
            element = body if raw.position is None else \
                dump_json(unwrap_body(body, "response", DEFAULT_LIMITS, exact=True)[index].item)
            await _dead_letter(store, origin, Rejected(exc.reason, exc.errors, element, raw.position), now)
    return changed


async def _answer(store: DataStore, raw: Any, now: datetime) -> int:
    if raw.error is not None:
        raise raw.error
    response = validate(CommandResponse, raw.payload, what="command response")
    if nests_deeper(raw.payload, MAX_JSON_DEPTH):  # the command's row could not be written
        raise InvalidInput(f"the command response nests arrays or objects more than {MAX_JSON_DEPTH} levels deep")
    if raw.topic is not None:
        topic_device, topic_command = raw.topic.split("/")[1], raw.topic.split("/")[3]
        if response.command_id != topic_command:
            raise InvalidInput(f"commandId {response.command_id!r} differs from the topic's {topic_command!r}")
    else:
        topic_device = raw.device_id or (raw.payload or {}).get("deviceId")
        if not isinstance(topic_device, str):
            raise InvalidInput("a command response needs its topic or a deviceId")
    # The command is looked up under the answering device: another device's command
    # (spoofed) is not found there, just like one never sent, or one whose id this API
    # does not issue. An answer too large for the command's row is InvalidInput too.
    command, changed = None, False
    if _issued(response.command_id):
        command, changed = await CommandStore(store).change(
            topic_device, response.command_id,
            lambda c: transitions.answered(c, response.status, response.result, response.error, now))
    if command is None:
        raise InvalidInput(f"no command {response.command_id!r} of device {topic_device!r}: never sent, or "
                           "another device's (an answer for it is rejected as spoofed)")
    if command.job_id:
        await sync_job_member(store, command)
    if changed and command.late_response is None and command.completed_at is not None:  # this answer completed it
        metrics.record(metrics.ANSWER_TIME, (command.completed_at - command.created_at).total_seconds(),
                       status=command.status)
    return int(changed)


def _issued(command_id: str) -> bool:
    return command_row(command_id) is not None


async def _dead_letter(store: DataStore, origin: Origin, rejected: Rejected, now: datetime) -> None:
    await dead_letter(store, STREAM, origin, rejected, now)
