"""Dead letters as the API returns them: a page of summaries, or one whole document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from shared.platform.models import ApiModel

Stream = Literal["telemetry", "inference", "command-responses", "lifecycle"]


class DeadLetterSummary(ApiModel):
    dead_letter_id: str = Field(description="With the stream, names the dead letter: "
                                "GET /deadletters/{stream}/{deadLetterId}.")
    stream: Stream
    reason: str = Field(description="Why it was rejected (its first 1024 characters).")
    device_id: str | None = Field(default=None, description="The device its bytes name: the topic of a routed "
                                  "message, else the payload's deviceId; absent when they name none.")
    received_at: datetime = Field(description="When the app first rejected it; the listing's order.")
    redriven_at: datetime | None = Field(default=None, description="When python -m tools.redrive sent it "
                                         "through its pipeline again and it was accepted.")


class DeadLetterPage(ApiModel):
    items: list[DeadLetterSummary]
    continuation_token: str | None = None


class EventHubOrigin(ApiModel):
    hub: str
    partition_id: str
    sequence_number: int
    offset: str | None = None
    enqueued_time: datetime
    position: int | None = Field(default=None, description="The element's index in an array body.")


class EventGridOrigin(ApiModel):
    id: str | None = None
    event_type: str | None = None
    subject: str | None = None


class DeadLetter(ApiModel):
    """The stored document, its id added."""

    dead_letter_id: str
    stream: Stream
    reason: str
    errors: list[dict[str, Any]] = Field(description="Field errors: loc, msg, type (at most 20).")
    body: str | None = Field(default=None, description="The original bytes, when they are UTF-8.")
    body_base64: str | None = Field(default=None, description="The original bytes otherwise.")
    event_hub: EventHubOrigin | None = None
    event_grid: EventGridOrigin | None = None
    received_at: datetime
    redriven_at: datetime | None = None
