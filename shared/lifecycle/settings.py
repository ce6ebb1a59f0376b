"""Settings of the life cycle capability (read by ``client_lifecycle`` only)."""

from __future__ import annotations

from shared.platform.settings import bounded_int, setting, settings_class


@settings_class
class LifecycleSettings:
    # The connection history keeps 20 session events: 10 connect-disconnect pairs.
    flapping_disconnects: int = setting("FLAPPING_DISCONNECTS", parse=bounded_int(1, 10), default=5)
    flapping_window_seconds: int = setting("FLAPPING_WINDOW_SECONDS", parse=bounded_int(1, 86_400), default=600)
