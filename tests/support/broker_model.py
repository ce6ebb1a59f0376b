"""What the Event Grid MQTT broker does with a topic, as its documentation says, so
that the templates in ``infra/`` can be evaluated offline against example topics.

Two rules, each written from the Azure docs and quoted where it is used:

* **authorization**: a client may publish a topic (or receive one) when a topic
  template of a topic space it holds matches the topic, after the template's
  variables are replaced by the client's values ("Topic Spaces in Azure Event
  Grid", "Access control for MQTT clients");
* **routing**: a routed message is a CloudEvent whose ``subject`` is the topic and
  whose routing enrichments are extension attributes ("Enrichments for MQTT routed
  messages"); a namespace topic subscription delivers it when its event type is
  included and every filter matches ("Event filters for subscriptions to Azure
  Event Grid namespace topics").

Plus the few readers that turn the Bicep of ``infra/app/eventgrid.bicep`` and
``eventgrid-routing.bicep`` into these models.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .bicep_parse import BicepFile, Resource, Value

__all__ = [
    "Client",
    "Filter",
    "Subscription",
    "may_use",
    "resolve",
    "routed_event",
    "substitute",
    "topic_matches",
]

# "Topic templates support MQTT wildcards (+ and #) and the following variables:
# ${client.authenticationName} ... ${client.attributes.x}".
_VARIABLE = re.compile(
    r"\$\{(?:client\.(?:(authenticationName)|attributes\.([A-Za-z0-9_]+))|(mqtt\.message\.topicName))\}")


@dataclass(frozen=True)
class Client:
    """A publisher or subscriber as the broker knows it.

    A device is a client resource: its authentication name and its attributes. The
    function app publishing with HTTP Publish is no client resource: "The Microsoft
    Entra Object ID becomes the MQTT client ID" ("HTTP Publish of MQTT messages"),
    and it has no attributes."""

    authentication_name: str
    attributes: Mapping[str, str] = field(default_factory=dict)


def substitute(template: str, client: Client) -> str | None:
    """``template`` with the client's values in its variables; None when it can match nothing.

    "A variable can represent a portion of a segment or an entire segment but can't
    cover more than one segment", and "Event Grid would allow access only to the
    clients that have a substituted value that matches either their authentication
    name or the value of the specified attribute": a value with ``/`` (or an MQTT
    wildcard) and an attribute the client lacks match no topic."""
    out: list[str] = []
    position = 0
    for match in _VARIABLE.finditer(template):
        value = client.authentication_name if match.group(1) else client.attributes.get(match.group(2))
        if value is None or any(c in value for c in "/+#"):
            return None
        out += [template[position:match.start()], value]
        position = match.end()
    rest = template[position:]
    if "${" in rest:
        raise ValueError(f"unknown variable in topic template {template!r}")
    return "".join(out) + rest


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT topic filter matches a topic name.

    "+: which matches a single segment"; "#: which matches zero or more segments at
    the end of the topic" ("machines/#" matches "machines" and "machines/temp/alert")."""
    levels = topic_filter.split("/")
    names = topic.split("/")
    for i, level in enumerate(levels):
        if level == "#":
            if i != len(levels) - 1:
                raise ValueError(f"# must be the last level of {topic_filter!r}")
            return True
        if i >= len(names):
            return False
        if level != "+" and level != names[i]:
            return False
    return len(levels) == len(names)


def may_use(templates: Iterable[str], client: Client, topic: str) -> bool:
    """Whether some template, with ``client``'s values, matches ``topic``."""
    for template in templates:
        concrete = substitute(template, client)
        if concrete is not None and topic_matches(concrete, topic):
            return True
    return False


# --------------------------------------------------------------------------- routing


def routed_event(
    topic: str, publisher: Client, dynamic: Mapping[str, str], static: Mapping[str, str]
) -> dict[str, str]:
    """The CloudEvent attributes of a routed message (the payload left out).

    "type": "MQTT.EventPublished", "subject": the topic of the MQTT publish request;
    dynamic enrichments take the publisher's values, and "if a dynamic enrichment
    pointed to a client attribute ... that doesn't exist, the enrichment will
    include the specified key with an empty string for a value"."""
    event = {"specversion": "1.0", "type": "MQTT.EventPublished", "subject": topic}
    for key, template in dynamic.items():
        match = _VARIABLE.fullmatch(template)
        if match is None:
            raise ValueError(f"enrichment {key}: unsupported value {template!r}")
        if match.group(1):
            event[key] = publisher.authentication_name
        elif match.group(2) is not None:
            event[key] = publisher.attributes.get(match.group(2), "")
        else:  # ${mqtt.message.topicName}: the topic of the PUBLISH
            event[key] = topic
    event.update(static)
    return event


_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "StringIn": lambda value, wanted: value == wanted,
    "StringBeginsWith": str.startswith,
    "StringEndsWith": str.endswith,
    "StringContains": lambda value, wanted: wanted in value,
}


@dataclass(frozen=True)
class Filter:
    """One advanced filter of a namespace topic subscription."""

    operator: str
    key: str
    values: tuple[str, ...]

    def matches(self, event: Mapping[str, str]) -> bool:
        """The documented semantics of the string operators.

        "All string comparisons aren't case-sensitive"; several values of one filter:
        "an OR operation is performed"; a key the event lacks: "filter is evaluated as
        not matched" for every string operator but StringNotIn, which is "matched"."""
        if self.key not in event:
            return self.operator == "StringNotIn"
        head, negation, tail = self.operator.partition("Not")
        test = _STRING_TESTS.get(head + tail)
        if test is None:
            raise ValueError(f"operator {self.operator} is not modelled")
        value = event[self.key].lower()
        hit = any(test(value, wanted.lower()) for wanted in self.values)
        return not hit if negation else hit


@dataclass(frozen=True)
class Subscription:
    """A namespace topic event subscription's filters."""

    name: str
    included_event_types: tuple[str, ...]
    filters: tuple[Filter, ...]

    def delivers(self, event: Mapping[str, str]) -> bool:
        """Its event type included and "each filter condition must be met" (AND)."""
        if self.included_event_types and event.get("type") not in self.included_event_types:
            return False
        return all(f.matches(event) for f in self.filters)


# --------------------------------------------------------------------------- reading the Bicep


def literal_scope(template: BicepFile) -> dict[str, object]:
    """The file's variables whose values are literals (strings, numbers, booleans)."""
    return {name: value.literal for name, value in template.variables.items() if value.is_literal}


def resolve(value: Value, scope: Mapping[str, object]) -> object:
    """A value written as a literal, a variable, ``item.key`` of a loop item, or an array of these."""
    if value.is_literal:
        return value.literal
    if value.kind == "array":
        return [resolve(item, scope) for item in value.items]
    if value.text in scope:
        return scope[value.text]
    head, dot, key = value.text.partition(".")
    item = scope.get(head)
    if dot and isinstance(item, Mapping) and key in item:
        return item[key]
    raise ValueError(f"cannot resolve {value.text!r} from literals")


def loop_items(template: BicepFile, variable: str) -> list[dict[str, object]]:
    """The literal properties of each object of an array variable (expressions left out)."""
    array = template.variables[variable]
    if array.kind != "array":
        raise ValueError(f"{variable} is not an array literal")
    return [{k: v.literal for k, v in item.props if v.is_literal} for item in array.items]


def subscription_of(resource: Resource, scope: Mapping[str, object]) -> Subscription:
    """A namespace topic subscription of the Bicep, its names resolved in ``scope``."""
    body = resource.body
    assert body is not None
    properties = body.get("properties")
    assert properties is not None
    config = properties.get("filtersConfiguration")
    assert config is not None, f"{resource.symbol}: no filtersConfiguration"
    types = config.get("includedEventTypes")
    filters = config.get("filters")
    parsed = []
    for item in filters.items if filters is not None else []:
        operator, key, values = (item.get(k) for k in ("operatorType", "key", "values"))
        assert operator is not None and key is not None and values is not None, item.text
        resolved = resolve(values, scope)
        assert isinstance(resolved, list)
        parsed.append(Filter(str(resolve(operator, scope)), str(resolve(key, scope)), tuple(map(str, resolved))))
    name = body.get("name")
    assert name is not None
    event_types = resolve(types, scope) if types is not None else []
    assert isinstance(event_types, list)
    return Subscription(str(resolve(name, scope)), tuple(map(str, event_types)), tuple(parsed))
