"""The archive line of an accepted message: ``{"deviceId", "timestamp", "message",
"eventHub"}``, the device and time the app settled on, the message as the device sent
it, and where it came from in Event Hubs. The device's fields live only inside
``message``, so none of them can collide with ours (a device's own ``eventHub`` field
was once replaced by the origin)."""

from __future__ import annotations

from shared.streams.batch import Origin
from shared.streams.decode import Accepted
from shared.streams.envelopes import dump_json


def archive_line(result: Accepted, origin: Origin) -> bytes:
    """One JSON line (no newline) for ``result``, which arrived at ``origin``."""
    where = origin.to_json()
    if result.position is not None:
        where["position"] = result.position
    return dump_json({**result.archive, "eventHub": where})
