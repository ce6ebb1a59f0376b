"""The health report."""

from __future__ import annotations

from typing import Literal

from shared.platform.models import ApiModel


class Health(ApiModel):
    status: Literal["ok", "degraded"]
    version: str
    checks: dict[str, str]
