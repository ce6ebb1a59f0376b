"""Schemathesis's hooks for our API (schemathesis.toml names this module): the rules of
the API that JSON Schema cannot state, applied to the cases schemathesis means to be
valid, so that each "valid request rejected" it reports is a real one. Negative cases
are left as generated: the API must refuse them. The rules, as docs/api.md states them:

- a continuationToken is valid only when this API issued it for this query (it carries
  a MAC): a positive case keeps only a token an answer gave (the nextPage links pass
  them on), never one made up;
- a time in a query lies in [1970-01-01, 2100-01-01) (the app's timestamp range);
- list_alerts's since is at most 90 days ago; get_model_stats's since and until are
  at most 31 days apart (and since not after until).

Times are read here with the standard library, not the app's parser, so a valid
RFC 3339 form the app refused would still be reported.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import schemathesis

MIN_TIME, MAX_TIME = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
ALERTS_LOOKBACK, STATS_RANGE = timedelta(days=90), timedelta(days=31)
# Query parameters that do not make a query another (a token outlives a change of them).
NOT_FILTERS = frozenset({"limit", "code", "continuationToken"})
# The tokens the API gave, with the query each continues (operation, path, filters).
ISSUED: set[tuple[str, tuple[object, ...]]] = set()  # (token, scope)


def _scope(case: Any) -> tuple[object, ...]:
    filters = {k: v for k, v in (case.query or {}).items() if k not in NOT_FILTERS and v not in ("", None)}
    return (case.operation.definition.raw.get("operationId"),
            tuple(sorted((k, str(v)) for k, v in (case.path_parameters or {}).items())),
            tuple(sorted((k, str(v)) for k, v in filters.items())))


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    try:
        body = orjson.loads(response.content)
    except (orjson.JSONDecodeError, TypeError):
        return
    if isinstance(body, dict) and isinstance(body.get("continuationToken"), str):
        ISSUED.add((body["continuationToken"], _scope(case)))


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    meta = case.meta
    if not case.query or (meta is not None and meta.generation.mode.is_negative):
        return
    query: dict[str, Any] = case.query
    if "continuationToken" in query and (str(query["continuationToken"]), _scope(case)) not in ISSUED:
        del query["continuationToken"]
    for name in ("since", "until"):
        value = _time(query.get(name))
        if value is not None and not MIN_TIME <= value < MAX_TIME:
            del query[name]
    operation, now = case.operation.definition.raw.get("operationId"), datetime.now(UTC)
    since, until = _time(query.get("since")), _time(query.get("until"))
    if operation == "list_alerts" and since is not None and since < now - ALERTS_LOOKBACK:
        del query["since"]
    if operation == "get_model_stats" and since is not None:
        end = until or now
        if since > end or end - since > STATS_RANGE:  # until defaults to now
            del query["since"]


def _time(text: object) -> datetime | None:
    """``text`` as an aware time, None when absent or not one Python reads."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text.upper())
        return value.astimezone(UTC) if value.tzinfo is not None else None
    except (ValueError, OverflowError):  # 0001-01-01T00:00+01:00 is before datetime.min in UTC
        return MIN_TIME - timedelta(days=1)
