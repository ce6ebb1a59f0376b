"""The dead letters' HTTP operations, as the OpenAPI document describes them."""

from __future__ import annotations

from shared.deadletters.models import DeadLetter, DeadLetterPage
from shared.platform.deadletter import DEAD_LETTER_ID_PATTERN, MAX_INDEXED_REASON, STREAMS
from shared.platform.operations import CONTINUATION_TOKEN, LIMIT, Link, Operation, Param, next_page

STREAM_SCHEMA = {"type": "string", "enum": list(STREAMS)}

OPERATIONS = (
    Operation("get", "/deadletters", "list_dead_letters", "Dead letters, newest first",
              {200: ("One page of dead letters, newest first by receivedAt", DeadLetterPage)},
              (Param("stream", "query", STREAM_SCHEMA, "Only this stream's; default all four."),
               Param("reason", "query", {"type": "string", "minLength": 1, "maxLength": MAX_INDEXED_REASON},
                     "Only those whose reason starts with this text (case-sensitive), e.g. `internal:`."),
               Param("deviceId", "query", {"type": "string", "minLength": 1, "maxLength": 128},
                     "Only those whose bytes name this device."),
               Param("since", "query", {"type": "string", "format": "date-time"},
                     "Only those received at or after this time (RFC 3339 with a time zone)."),
               LIMIT, CONTINUATION_TOKEN),
              links={200: next_page("list_dead_letters", "stream", "reason", "deviceId", "since") | {
                  "deadLetter": Link("get_dead_letter", {"stream": "$response.body#/items/0/stream",
                                                         "deadLetterId": "$response.body#/items/0/deadLetterId"},
                                     "The page's first dead letter with its bytes.")}}),
    Operation("get", "/deadletters/{stream}/{deadLetterId}", "get_dead_letter",
              "One dead letter with its original bytes",
              {200: ("The stored document, with its id", DeadLetter)},
              (Param("stream", "path", STREAM_SCHEMA),
               Param("deadLetterId", "path", {"type": "string", "pattern": DEAD_LETTER_ID_PATTERN},
                     "As list_dead_letters gives it."))),
)
