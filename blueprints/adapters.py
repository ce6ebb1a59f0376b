"""What every blueprint's functions share: the HTTP functions' failures answered as
problems, and the Event Hubs trigger of a batch function with its retry policy.
Both keep the function's own signature, which the Python worker reads to index it
(``tests/test_worker.py`` loads every function through the worker's code)."""

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func

Http = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]

# Why 8: a batch is retried for about 15 minutes (5 s doubling to at most 5 min),
# which rides out throttling and short storage outages while the partition waits;
# after the last retry the batch goes to dead letters, so the partition moves on
# and nothing is dropped (shared/streams/service.py).
RETRY: dict[str, Any] = {"strategy": "exponential_backoff", "max_retry_count": "8", "minimum_interval": "00:00:05",
                         "maximum_interval": "00:05:00"}


def problems(function: Http) -> Http:
    """``function`` with whatever it raises answered as ``shared.platform.http.respond``
    answers it (problem+json with the reason, 503 with Retry-After for a transient
    storage failure), its lazy imports included."""

    @functools.wraps(function)
    async def answered(req: func.HttpRequest) -> func.HttpResponse:
        from shared.platform.http import respond

        return await respond(functools.partial(function, req))

    return answered


def event_hub_batches(bp: func.Blueprint, name: str, hub_setting: str) -> Callable[[Any], Any]:
    """The decorators of a function taking the batches of the hub named by setting
    ``hub_setting``: many events at a time, as bytes, retried by RETRY."""
    trigger = bp.event_hub_message_trigger(
        arg_name="events", event_hub_name=f"%{hub_setting}%", connection="EventHubConnection",
        consumer_group="%EVENTHUB_CONSUMER_GROUP%", cardinality=func.Cardinality.MANY,
        data_type=func.DataType.BINARY)

    def decorate(function: Any) -> Any:
        return bp.function_name(name)(trigger(bp.retry(**RETRY)(function)))

    return decorate
