"""The base of every API model (camelCase on the wire) and the RFC 9457 problem."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo
from pydantic.alias_generators import to_camel

from shared.platform.timestamps import check_timestamp, parse_timestamp


class ApiModel(BaseModel):
    # A response model has a fixed shape: its schema admits no other property
    # (free-form values are ``dict`` fields, e.g. a device's ``attributes``).
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True,
                              json_schema_extra={"additionalProperties": False})

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form: camelCase, absent optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Problem(ApiModel):
    """RFC 9457 problem details (:func:`shared.platform.http.problem` writes them)."""

    type: str = "about:blank"
    title: str
    status: int = Field(ge=400, le=599)
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


def _timestamp(value: object, info: ValidationInfo) -> object:
    if isinstance(value, datetime):
        return check_timestamp(value, field=info.field_name or "timestamp")
    return parse_timestamp(value, field=info.field_name or "timestamp")


# A model field that accepts exactly what :mod:`shared.platform.timestamps` accepts.
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
