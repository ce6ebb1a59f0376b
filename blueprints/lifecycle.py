"""Device life cycle: Event Grid MQTT client life cycle events -> device registry."""

import azure.functions as func

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("client_lifecycle")
@bp.event_grid_trigger(arg_name="event")
async def client_lifecycle(event: func.EventGridEvent) -> None:
    """Both delivery schemas arrive here: the library decodes CloudEvents 1.0 as
    ``func.CloudEvent`` and the Event Grid schema as ``func.EventGridEvent``."""
    from shared.lifecycle.service import handle_lifecycle_event

    record = await handle_lifecycle_event(event)
    if record is not None and record.pending_commands and record.device.connected:
        # Commands wait for this device: publish them now, in the order they came.
        from shared.commands.service import deliver_pending

        await deliver_pending(record.device.device_id)
