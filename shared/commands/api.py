"""The command API's operations, as the OpenAPI document describes them."""

from __future__ import annotations

from shared.commands.models import (
    COMMANDABLE_DEVICE_ID_SCHEMA,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    STATUSES,
    Broadcast,
    BroadcastPage,
    BroadcastRequest,
    Command,
    CommandPage,
    CommandRequest,
    FleetCommandRequest,
    FleetJob,
)
from shared.platform.operations import CONTINUATION_TOKEN, DEVICE_ID, LIMIT, Link, Operation, Param, next_page

COMMANDABLE_DEVICE_ID = Param("deviceId", "path", {k: v for k, v in COMMANDABLE_DEVICE_ID_SCHEMA.items()
                                                   if k != "description"},
                               DEVICE_ID.description + " A command needs an id that can stand as one MQTT topic "
                               "level: no '/', '+', '#' or control characters (400).")
COMMAND_ID = Param("commandId", "path", {"type": "string", "format": "uuid"},
                   "As send_command answered it; 400 when it is not a UUID, 404 for one never issued.")
JOB_ID = Param("jobId", "path", {"type": "string", "format": "uuid"},
               "As send_fleet_command answered it; 400 when it is not a UUID, 404 for one never issued.")
IDEMPOTENCY_KEY = Param("Idempotency-Key", "header",
                        {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
                        "The same key and body answer the original command (200); another body is a 409; "
                        "a longer or empty key is a 400.")
STATUS = Param("status", "query", {"type": "string", "enum": list(STATUSES)}, "Only commands in it.")

_SENT = {"deviceId": "$request.path.deviceId", "commandId": "$response.body#/commandId"}
SENT_LINKS = {"command": Link("get_command", _SENT, "The command's status."),
              "cancel": Link("cancel_command", _SENT, "Cancel it while pending or sent."),
              "commands": Link("list_commands", {"deviceId": "$request.path.deviceId"}, "The device's commands.")}

OPERATIONS = (
    Operation("post", "/devices/{deviceId}/commands", "send_command", "Send a command to one device",
              {202: ("Accepted: published (sent) or queued for the offline device (pending)", Command),
               200: ("The command this Idempotency-Key made before", Command)},
              (COMMANDABLE_DEVICE_ID, IDEMPOTENCY_KEY), request=CommandRequest, problems=(409, 413, 502),
              links={202: SENT_LINKS, 200: SENT_LINKS}),
    Operation("get", "/devices/{deviceId}/commands", "list_commands", "A device's commands, newest first",
              {200: ("One page of commands", CommandPage)}, (COMMANDABLE_DEVICE_ID, STATUS, LIMIT, CONTINUATION_TOKEN),
              links={200: next_page("list_commands", "status", path=("deviceId",)) | {
                  "command": Link("get_command", {"deviceId": "$request.path.deviceId",
                                                  "commandId": "$response.body#/items/0/commandId"},
                                  "The page's first command.")}}),
    Operation("get", "/devices/{deviceId}/commands/{commandId}", "get_command", "Read one command",
              {200: ("The command", Command)}, (COMMANDABLE_DEVICE_ID, COMMAND_ID)),
    Operation("post", "/devices/{deviceId}/commands/{commandId}/cancel", "cancel_command",
              "Cancel a pending or sent command", {200: ("Cancelled", Command)}, (COMMANDABLE_DEVICE_ID, COMMAND_ID),
              problems=(409,)),
    Operation("post", "/commands", "send_fleet_command", "Send a command to many devices (a fleet job)",
              {202: ("The job; its counts show the fan-out's progress", FleetJob)}, request=FleetCommandRequest,
              problems=(409, 413),
              links={202: {"job": Link("get_fleet_command", {"jobId": "$response.body#/jobId"}, "The job's counts.")}}),
    Operation("get", "/commands/{jobId}", "get_fleet_command", "A fleet job's counts by status",
              {200: ("The job", FleetJob)}, (JOB_ID,)),
    Operation("post", "/broadcasts", "send_broadcast", "Publish one message to every subscribed device",
              {202: ("Published", Broadcast)}, request=BroadcastRequest, problems=(413, 502)),
    Operation("get", "/broadcasts", "list_broadcasts", "The broadcasts sent, newest first",
              {200: ("One page of broadcasts", BroadcastPage)}, (LIMIT, CONTINUATION_TOKEN),
              links={200: next_page("list_broadcasts")}),
)
