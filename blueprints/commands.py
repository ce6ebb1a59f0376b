"""Cloud-to-edge commands: one device, fleet jobs, broadcasts; their expiry, the
fleet fan-out's continuation, and the devices' answers."""

from typing import List  # List, not list: see blueprints/__init__.py

import azure.functions as func

from blueprints.adapters import event_hub_batches, problems

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("send_command")
@bp.route(route="devices/{deviceId}/commands", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def send_command(req: func.HttpRequest) -> func.HttpResponse:
    from shared.commands.models import MAX_IDEMPOTENCY_KEY_LENGTH, MAX_PAYLOAD_BYTES, CommandRequest
    from shared.commands.service import issued_by, send_command
    from shared.platform.http import (
        header_text,
        json_response,
        request_json,
        route_device_id,
        validated,
        within_bytes,
    )

    device_id = route_device_id(req, commandable=True)
    key = header_text(req, "Idempotency-Key", max_length=MAX_IDEMPOTENCY_KEY_LENGTH)
    request = validated(CommandRequest, request_json(req, max_bytes=MAX_PAYLOAD_BYTES + 4096))
    within_bytes(request.payload, max_bytes=MAX_PAYLOAD_BYTES, what="payload")
    sent = await send_command(device_id, request, idempotency_key=key, issued_by=issued_by(req.headers))
    command = sent.command
    location = f"/api/devices/{_quote(command.device_id)}/commands/{command.command_id}"
    return json_response(command, status=202 if sent.created else 200, headers={"Location": location})


@bp.function_name("get_command")
@bp.route(route="devices/{deviceId}/commands/{commandId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def get_command(req: func.HttpRequest) -> func.HttpResponse:
    from shared.commands.store import CommandStore
    from shared.platform.errors import NotFound
    from shared.platform.http import json_response, route_device_id, route_uuid
    from shared.platform.storage import data_store

    device_id, command_id = route_device_id(req, commandable=True), route_uuid(req, "commandId")
    command = await CommandStore(data_store()).get(device_id, command_id)
    if command is None:
        raise NotFound(f"no command {command_id} of device {device_id!r}")
    return json_response(command)


@bp.function_name("list_commands")
@bp.route(route="devices/{deviceId}/commands", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def list_commands(req: func.HttpRequest) -> func.HttpResponse:
    from shared.commands.models import STATUSES, CommandPage
    from shared.commands.store import CommandStore
    from shared.platform.http import json_response, query_choice, query_int, route_device_id
    from shared.platform.storage import data_store

    items, token = await CommandStore(data_store()).page(
        route_device_id(req, commandable=True),
        status=query_choice(req, "status", STATUSES),
        limit=query_int(req, "limit", default=100, minimum=1, maximum=1000),
        continuation_token=req.params.get("continuationToken"))
    return json_response(CommandPage(items=items, continuation_token=token))


@bp.function_name("cancel_command")
@bp.route(route="devices/{deviceId}/commands/{commandId}/cancel", methods=["POST"],
          auth_level=func.AuthLevel.FUNCTION)
@problems
async def cancel_command(req: func.HttpRequest) -> func.HttpResponse:
    from shared.commands.service import cancel_command
    from shared.platform.http import json_response, route_device_id, route_uuid

    command = await cancel_command(route_device_id(req, commandable=True), route_uuid(req, "commandId"))
    return json_response(command)


@bp.function_name("send_fleet_command")
@bp.route(route="commands", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def send_fleet_command(req: func.HttpRequest) -> func.HttpResponse:
    from shared.commands.fleet import create_job
    from shared.commands.models import MAX_PAYLOAD_BYTES, FleetCommandRequest
    from shared.commands.service import issued_by
    from shared.platform.http import json_response, request_json, validated, within_bytes

    request = validated(FleetCommandRequest, request_json(req, max_bytes=MAX_PAYLOAD_BYTES + 256 * 1024))
    within_bytes(request.payload, max_bytes=MAX_PAYLOAD_BYTES, what="payload")
    job = await create_job(request, issued_by=issued_by(req.headers))
    return json_response(job, status=202, headers={"Location": f"/api/commands/{job.job_id}"})


@bp.function_name("get_fleet_command")
@bp.route(route="commands/{jobId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def get_fleet_command(req: func.HttpRequest) -> func.HttpResponse:
    from shared.commands.fleet import get_job
    from shared.platform.http import json_response, route_uuid

    return json_response(await get_job(route_uuid(req, "jobId")))


@bp.function_name("send_broadcast")
@bp.route(route="broadcasts", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def send_broadcast(req: func.HttpRequest) -> func.HttpResponse:
    from shared.commands.broadcasts import send_broadcast
    from shared.commands.models import MAX_PAYLOAD_BYTES, BroadcastRequest
    from shared.commands.service import issued_by
    from shared.platform.http import json_response, request_json, validated, within_bytes

    request = validated(BroadcastRequest, request_json(req, max_bytes=MAX_PAYLOAD_BYTES + 4096))
    within_bytes(request.payload, max_bytes=MAX_PAYLOAD_BYTES, what="payload")
    return json_response(await send_broadcast(request, issued_by=issued_by(req.headers)), status=202)


@bp.function_name("list_broadcasts")
@bp.route(route="broadcasts", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def list_broadcasts(req: func.HttpRequest) -> func.HttpResponse:
    from shared.commands.broadcasts import list_broadcasts
    from shared.commands.models import BroadcastPage
    from shared.platform.http import json_response, query_int

    items, token = await list_broadcasts(limit=query_int(req, "limit", default=100, minimum=1, maximum=1000),
                                         continuation_token=req.params.get("continuationToken"))
    return json_response(BroadcastPage(items=items, continuation_token=token))


@bp.function_name("command_expiry")
@bp.timer_trigger(arg_name="timer", schedule="0 * * * * *", run_on_startup=False)
async def command_expiry(timer: func.TimerRequest) -> None:
    """Every minute: expire the overdue pending and sent commands."""
    from shared.commands.service import expire_due

    await expire_due()


@bp.function_name("fleet_fanout")
@bp.queue_trigger(arg_name="message", queue_name="fleet-fanout", connection="AzureWebJobsStorage")
async def fleet_fanout(message: func.QueueMessage) -> None:
    """A large fleet job's devices beyond the first few hundred, a chunk at a time."""
    from shared.commands.fleet import continue_fan_out

    await continue_fan_out(message.get_body())


@event_hub_batches(bp, "command_responses", "COMMAND_RESPONSES_HUB_NAME")
async def command_responses(events: List[func.EventHubEvent], context: func.Context) -> None:
    from shared.commands.responses import handle_responses

    retry = context.retry_context
    await handle_responses(events, retry_count=retry.retry_count, max_retry_count=retry.max_retry_count)


def _quote(device_id: str) -> str:
    from urllib.parse import quote

    return quote(device_id, safe="")
