"""The health report."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.platform.models import ApiModel

CheckResult = Annotated[str, Field(pattern=r"^(ok|misconfigured: .+|unreachable: .+)$",
                                   description="`ok`, or why not: `misconfigured: ...` or `unreachable: ...`.")]


class HealthChecks(ApiModel):
    table_storage: CheckResult
    blob_storage: CheckResult


class Health(ApiModel):
    status: Literal["ok", "degraded"]
    version: str
    checks: HealthChecks
