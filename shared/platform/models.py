"""The base of every API model (camelCase on the wire) and the RFC 9457 problem."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo
from pydantic.alias_generators import to_camel

from shared.platform.timestamps import check_timestamp, parse_timestamp


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form: camelCase, absent optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Problem(ApiModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


def _timestamp(value: object, info: ValidationInfo) -> object:
    if isinstance(value, datetime):
        return check_timestamp(value, field=info.field_name or "timestamp")
    return parse_timestamp(value, field=info.field_name or "timestamp")


# A model field that accepts exactly what :mod:`shared.platform.timestamps` accepts.
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
