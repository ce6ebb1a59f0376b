"""The archive line of an accepted message: the message in its wire form with where
it came from in Event Hubs."""

from __future__ import annotations

import orjson

from shared.streams.batch import Origin
from shared.streams.decode import Accepted


def archive_line(result: Accepted, origin: Origin) -> bytes:
    """One JSON line (no newline) for ``result``, which arrived at ``origin``."""
    where = origin.to_json()
    if result.position is not None:
        where["position"] = result.position
    return orjson.dumps({**result.archive, "eventHub": where})
