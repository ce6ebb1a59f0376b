"""The functions the contract names, as the indexing tests and the worker's find them."""

from __future__ import annotations

CONTRACT_FUNCTIONS = {
    "client_lifecycle": "eventGridTrigger", "telemetry_ingest": "eventHubTrigger",
    "inference_ingest": "eventHubTrigger", "command_responses": "eventHubTrigger", "command_expiry": "timerTrigger",
    **{name: "httpTrigger" for name in (
        "send_command", "get_command", "list_commands", "cancel_command", "send_fleet_command",
        "get_fleet_command", "send_broadcast", "list_broadcasts", "list_devices", "get_device", "list_alerts",
        "get_model_stats", "list_dead_letters", "get_dead_letter", "health", "openapi")},
    # Ours beyond the contract (it allows more, documented): a large fleet job's fan-out.
    "fleet_fanout": "queueTrigger",
}
