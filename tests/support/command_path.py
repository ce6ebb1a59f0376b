"""The Event Grid namespace's routing configuration as main.bicep makes it, for the command
path's and the routed events' tests."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from tests.support.bicep_eval import evaluate
from tests.support.bicep_parse import BicepFile, parse
from tests.support.infra import INFRA, ROOT

EVENTGRID_BICEP = INFRA / "app" / "eventgrid.bicep"


@cache
def template(path: Path) -> BicepFile:
    return parse(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


def eventgrid() -> BicepFile:
    return template(EVENTGRID_BICEP)


# The parameters the namespace's configuration reads (any values: the enrichments do not depend on them).
NAMESPACE_PARAMS = {"name": "evgns-x", "maximumClientSessionsPerAuthenticationName": 1,
                    "maximumSessionExpiryInHours": 1, "routingEstablished": True}


def routed_configuration() -> dict[str, Any]:
    """The routed namespace's ``topicSpacesConfiguration``, as eventgrid.bicep builds it for
    both of its writes (``routedTopicSpaces``, which the routing module writes as given)."""
    value = evaluate(eventgrid(), "routedTopicSpaces", NAMESPACE_PARAMS,
                     {"resourceId": lambda kind, *names: f"/{kind}/{'/'.join(names)}"})
    assert isinstance(value, dict)
    return value
