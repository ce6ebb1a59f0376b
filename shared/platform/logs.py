"""What the app logs, and what it keeps the SDKs from logging.

The worker sets the root logger to Information and ships every record to the host as
a user log of the invocation, which Application Insights ingests against its daily
cap. At that level azure-core's HTTP logging policy writes two multi-line records
(all headers) per storage request, and the Event Hubs and identity clients one per
connection step: 98 records for 12 telemetry batches of 100 before this. The SDKs'
loggers are raised to Warning, so their failures still show; the app itself logs at
most one line per batch, plus every error and alert (``make bench``,
``log_records_per_1000_messages``, at most 5).
"""

from __future__ import annotations

import logging

# The SDK loggers the app's clients write to. "azure.functions" is left alone: it is
# the worker's own.
SDK_LOGGERS = ("azure.core", "azure.identity", "azure.storage", "azure.data.tables", "azure.eventhub", "uamqp")


def quiet_sdk_loggers() -> None:
    """Raise the SDKs' loggers to Warning (a record below it is never even built)."""
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
