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
    if record is not None and record.pending_commands:
        # Commands wait for this device: published now, in the order they came, if it
        # is connected; ended if it is deleted.
        from shared.commands.service import follow_device

        await follow_device(record)
