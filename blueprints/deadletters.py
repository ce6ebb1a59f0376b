"""Dead letters over HTTP: list them, read one with its original bytes."""

import azure.functions as func

from blueprints.adapters import problems

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("list_dead_letters")
@bp.route(route="deadletters", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def list_dead_letters(req: func.HttpRequest) -> func.HttpResponse:
    from shared.deadletters.models import DeadLetterPage
    from shared.deadletters.store import Selection, list_page
    from shared.platform.deadletter import MAX_INDEXED_REASON, STREAMS
    from shared.platform.http import (
        json_response,
        query_choice,
        query_datetime,
        query_device_id,
        query_int,
        query_text,
    )
    from shared.platform.storage import data_store

    selection = Selection(stream=query_choice(req, "stream", STREAMS),
                          reason=query_text(req, "reason", max_length=MAX_INDEXED_REASON),
                          device_id=query_device_id(req, "deviceId"), since=query_datetime(req, "since"))
    items, token = await list_page(data_store(), selection,
                                   limit=query_int(req, "limit", default=100, minimum=1, maximum=1000),
                                   continuation_token=req.params.get("continuationToken"))
    return json_response(DeadLetterPage(items=items, continuation_token=token))


@bp.function_name("get_dead_letter")
@bp.route(route="deadletters/{stream}/{deadLetterId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@problems
async def get_dead_letter(req: func.HttpRequest) -> func.HttpResponse:
    from shared.deadletters.store import dead_letter, read
    from shared.platform.deadletter import STREAMS, parse_dead_letter_id
    from shared.platform.errors import NotFound
    from shared.platform.http import json_response, route_choice, route_param
    from shared.platform.storage import data_store

    stream = route_choice(req, "stream", STREAMS)
    letter_id = route_param(req, "deadLetterId", parse_dead_letter_id)
    stored = await read(data_store(), stream, letter_id)
    if stored is None:
        raise NotFound(f"no dead letter {letter_id!r} in stream {stream!r}")
    return json_response(dead_letter(stored))
