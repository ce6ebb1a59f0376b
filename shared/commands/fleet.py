"""Fleet jobs: one request, one tracked command per targeted device.

Table ``fleetjobs``: ``PartitionKey`` = the job id; row ``job`` (the request, who
issued it, the total in ``doc``, split over binary properties so that a 256 KiB
payload fits); one row ``m|{device key}`` per targeted device with the status of
its command (``queued`` until its command is made; ``failed`` with a reason when
the device could not be commanded). Every member row is written before the job row.

The fan-out sends each device's command with the idempotency key ``job:{jobId}``,
so any part of it can be repeated (a retry, a redelivered queue message) without a
second command. The first ``INLINE_DEVICES`` devices are sent before the 202, with
bounded concurrency; the rest go in chunks of ``CHUNK`` to the Storage queue
``fleet-fanout`` (in ``AzureWebJobsStorage``), whose trigger ``fleet_fanout``
continues, and the counts show the progress. A command's later changes (its
answer, its expiry) are copied to its member row, so the counts follow.

The fan-out is ``done`` when no member is ``queued`` any more: the counts say so,
read from storage with them. Chunks run in parallel and in any order, so no chunk
knows it is the last (a job of 450 devices said ``done`` with 200 still queued when
its last chunk ran first); a chunk that fails is retried by the queue and leaves
the job ``running`` until it succeeds (or, poisoned after 5 attempts, for good).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.commands.jobs import member_row, set_member, sync_job_member
from shared.commands.models import CommandRequest, FleetCommandRequest, FleetJob
from shared.platform import metrics
from shared.platform.concurrency import each
from shared.platform.errors import Conflict, InvalidInput, NotFound, PublishRefused, Unavailable
from shared.platform.rows import joined_json, split_json
from shared.platform.storage import DataStore, data_store
from shared.platform.storage_names import FLEET_JOBS_TABLE

log = logging.getLogger(__name__)
INLINE_DEVICES = 200
CHUNK = 100
CONCURRENCY = 16
QUEUE = "fleet-fanout"


async def targets(store: DataStore, request: FleetCommandRequest) -> list[str]:
    """The devices a job targets: the ids given (checked later, one by one), or
    every device of the registry (not deleted) whose attributes equal the given."""
    target = request.target
    if target.device_ids is not None:
        return list(dict.fromkeys(target.device_ids))
    from shared.lifecycle.registry import DeviceRegistry

    assert target.attributes is not None
    wanted = target.attributes
    found = []
    async for document in DeviceRegistry(store).scan():
        attributes = document.get("attributes") or {}
        if not document.get("deleted") and all(attributes.get(k) == v for k, v in wanted.items()):
            found.append(str(document["deviceId"]))
    return found


async def create_job(request: FleetCommandRequest, *, issued_by: str, now: datetime | None = None) -> FleetJob:
    """Store the job and its members, send the first commands, queue the rest."""
    import uuid

    store = data_store()
    now = now or datetime.now(UTC)
    devices = await targets(store, request)
    if not devices:
        raise Conflict("the target matches no device")
    job_id = str(uuid.uuid4())
    table = await store.table(FLEET_JOBS_TABLE)
    job = {"PartitionKey": job_id, "RowKey": "job", **split_json("doc", {
        "jobId": job_id, "name": request.name, "payload": request.payload,
        "timeoutSeconds": request.timeout_seconds, "target": request.target.to_json_dict(),
        "createdAt": now.isoformat(), "issuedBy": issued_by, "total": len(devices)}, what="fleet job")}
    members = [("upsert", {"PartitionKey": job_id, "RowKey": member_row(d), "deviceId": d, "status": "queued"})
               for d in devices]
    for i in range(0, len(members), 100):  # one partition: transactions of at most 100
        await table.submit_transaction(members[i:i + 100])
    await table.create_entity(job)
    await fan_out(job_id, devices[:INLINE_DEVICES])
    rest = devices[INLINE_DEVICES:]
    if rest:
        await _enqueue(job_id, [rest[i:i + CHUNK] for i in range(0, len(rest), CHUNK)])
    return await get_job(job_id)


async def fan_out(job_id: str, devices: list[str]) -> None:
    """Send the job's command to ``devices`` (at most ``CONCURRENCY`` at once)."""
    from shared.commands.service import send_command

    store = data_store()
    table = await store.table(FLEET_JOBS_TABLE)
    job = joined_json(await table.get_entity(job_id, "job"), "doc")
    request = CommandRequest.model_validate({"name": job["name"], "payload": job["payload"],
                                             "timeoutSeconds": job["timeoutSeconds"]})

    async def one(device_id: str) -> None:
        try:
            sent = await send_command(device_id, request, idempotency_key=f"job:{job_id}",
                                      issued_by=job["issuedBy"], job_id=job_id)
            await sync_job_member(store, sent.command)
        # This device cannot be commanded (an id that cannot be, unknown, deleted, disabled,
        # offline under reject) or its command was not published; the others can be.
        except (InvalidInput, NotFound, Conflict, PublishRefused, Unavailable) as exc:
            await set_member(store, job_id, device_id, {"status": "failed", "reason": str(exc)[:512]})

    with metrics.batch(durable=True):
        await each(devices, one, limit=CONCURRENCY)


async def _enqueue(job_id: str, chunks: list[list[str]]) -> None:
    from shared.platform.host_storage import queue_client

    queue = await queue_client(QUEUE)
    for chunk in chunks:
        await queue.send_message(orjson.dumps({"jobId": job_id, "deviceIds": chunk}).decode())


async def continue_fan_out(message: bytes) -> None:
    """One queued chunk of a job's devices (the ``fleet_fanout`` queue trigger); the
    ``last`` that older messages carry is not needed any more."""
    body = orjson.loads(message)
    await fan_out(str(body["jobId"]), [str(d) for d in body["deviceIds"]])


async def get_job(job_id: str) -> FleetJob:
    from azure.core.exceptions import ResourceNotFoundError

    table = await data_store().table(FLEET_JOBS_TABLE)
    try:
        job = await table.get_entity(job_id, "job")
    except ResourceNotFoundError:
        raise NotFound(f"no fleet job {job_id!r}") from None
    counts: dict[str, int] = {}
    async for member in table.query_entities("PartitionKey eq @job and RowKey gt @low and RowKey lt @high",
                                             parameters={"job": job_id, "low": "m|", "high": "m}"},
                                             select=["status"]):
        counts[member["status"]] = counts.get(member["status"], 0) + 1
    doc: dict[str, Any] = joined_json(job, "doc")
    return FleetJob(job_id=job_id, name=doc["name"], total=doc["total"], counts=counts,
                    created_at=doc["createdAt"], issued_by=doc["issuedBy"], target=doc["target"],
                    fanout="running" if counts.get("queued") else "done")
