"""The health report, as the OpenAPI document describes it (``shared.meta.health``
builds the same shape as a plain dict, without pydantic)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.platform.models import ApiModel

StorageCheck = Literal["ok", "unreachable", "misconfigured"]


class HealthChecks(ApiModel):
    table_storage: StorageCheck
    blob_storage: StorageCheck
    settings: str = Field(pattern=r"^(ok|invalid: \w+(, \w+)*)$",
                          description="ok, or the names of the bad settings (never their values)")


class Health(ApiModel):
    status: Literal["ok", "degraded"]
    version: str
    checks: HealthChecks
