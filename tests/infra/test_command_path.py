"""The command path's infrastructure, evaluated offline against example topics.

Who may publish and receive which MQTT topic (topic spaces, permission bindings, the
app's RBAC role) and where the broker routes what is published (routing enrichments,
the namespace topic's subscriptions), read from ``infra/`` and evaluated with the
documented rules of :mod:`tests.support.broker_model`.

The topics (``../shared/CONTRACT.md``, "MQTT topics on the device side"): a device
publishes ``devices/{id}/telemetry``, ``devices/{id}/inference`` and
``devices/{id}/commands/{commandId}/response``; the app publishes
``devices/{id}/commands/{name}``, ``broadcast/{name}`` and
``groups/{group}/broadcast/{name}`` with HTTP Publish.
"""

from __future__ import annotations

import re
import string
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.bicep_parse import BicepFile, Resource
from tests.support.broker_model import (
    Client,
    Filter,
    Subscription,
    literal_scope,
    loop_items,
    may_use,
    resolve,
    routed_event,
    subscription_of,
    substitute,
    topic_matches,
)
from tests.support.command_path import eventgrid, routed_configuration, template
from tests.support.infra import INFRA

ROUTING_BICEP = INFRA / "app" / "eventgrid-routing.bicep"
RBAC_BICEP = INFRA / "app" / "rbac.bicep"
MAIN_BICEP = INFRA / "main.bicep"

TOPIC_SPACES_PUBLISHER = "a12b0b94-b317-4dcd-84a8-502ce99884c6"
TOPIC_SPACES_SUBSCRIBER = "4b0f2fd7-60b4-4eca-896f-4435034f8bf5"

# The function app's user-assigned identity publishing with HTTP Publish: "The Microsoft
# Entra Object ID becomes the MQTT client ID"; it is no client resource, so it has no
# attributes.
APP = Client("0b5e6f1c-3f7d-4a54-9c1e-2d8f4a7b9e10")

COMMAND_NAMES = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=64)
# Any authentication name a device can use in a topic: 1-128 characters, no level separator or wildcard.
DEVICE_IDS = st.text(st.characters(codec="utf-8", exclude_characters="/+#\x00"), min_size=1,
                     max_size=128)


# --------------------------------------------------------------------------- reading infra/


def resource(bicep: BicepFile, symbol: str) -> Resource:
    (found,) = [r for r in bicep.resources if r.symbol == symbol]
    return found


def topic_spaces() -> dict[str, tuple[str, list[str]]]:
    """Topic space symbol -> (name, templates)."""
    scope = literal_scope(eventgrid())
    out = {}
    for space in eventgrid().resources:
        if space.type_name == "Microsoft.EventGrid/namespaces/topicSpaces" and not space.existing:
            assert space.body is not None
            name, templates = space.body.get("name"), space.body.get("properties")
            assert name is not None and templates is not None
            listed = templates.get("topicTemplates")
            assert listed is not None
            resolved = resolve(listed, scope)
            assert isinstance(resolved, list)
            out[space.symbol] = (str(resolve(name, scope)), [str(t) for t in resolved])
    return out


def bindings() -> list[tuple[str, str, str]]:
    """(client group symbol, topic space symbol, permission) of every permission binding."""
    out = []
    for binding in eventgrid().resources:
        if binding.type_name == "Microsoft.EventGrid/namespaces/permissionBindings":
            properties = binding.body.get("properties") if binding.body is not None else None
            assert properties is not None
            group, space, permission = (properties.get(k) for k in ("clientGroupName", "topicSpaceName", "permission"))
            assert group is not None and space is not None and permission is not None
            out.append((group.text.removesuffix(".name"), space.text.removesuffix(".name"), str(permission.literal)))
    return out


def device_templates(permission: str) -> list[str]:
    """The templates the devices' client group holds with ``permission``."""
    spaces = topic_spaces()
    return [t for group, space, granted in bindings() if group == "deviceGroup" and granted == permission
            for t in spaces[space][1]]


def device(name: str, group: str | None = None) -> Client:
    """A device client as infra/ registers it: attribute role = deviceRoleAttribute (and maybe a group)."""
    attributes = {"role": str(literal_scope(eventgrid())["deviceRoleAttribute"])}
    if group is not None:
        attributes["group"] = group
    return Client(name, attributes)


def publisher_role_scopes() -> set[str]:
    """The names of the topic spaces any TopicSpaces Publisher assignment is scoped to.

    rbac.bicep scopes an `existing` topic space named by a parameter, which main.bicep
    passes from an output of eventgrid.bicep, the `.name` of a topic space there."""
    rbac = template(RBAC_BICEP)
    main = template(MAIN_BICEP)
    rbac_module = next(m for m in main.modules if m.path == "app/rbac.bicep")
    names = set()
    for assignment in rbac.resources:
        if assignment.type_name != "Microsoft.Authorization/roleAssignments" or assignment.body is None:
            continue
        role = assignment.body.get("properties")
        assert role is not None
        role_id = role.get("roleDefinitionId")
        assert role_id is not None
        named = re.search(r"roles\.(\w+)\)$", role_id.text)
        assert named, role_id.text
        granted = rbac.variables["roles"].get(named.group(1))
        assert granted is not None
        if granted.literal != TOPIC_SPACES_PUBLISHER:
            continue
        scope = assignment.body.get("scope")
        assert scope is not None
        space = resource(rbac, scope.text)
        assert space.existing and space.type_name == "Microsoft.EventGrid/namespaces/topicSpaces"
        assert space.body is not None
        parameter = space.body.get("name")
        assert parameter is not None
        passed = rbac_module.body.get("params") if rbac_module.body is not None else None
        assert passed is not None
        argument = passed.get(parameter.text)
        assert argument is not None, f"main.bicep passes no {parameter.text}"
        match = re.fullmatch(r"eventGrid\.outputs\.(\w+)", argument.text)
        assert match, argument.text
        output = eventgrid().outputs[match.group(1)]
        names.add(topic_spaces()[output.text.removesuffix(".name")][0])
    return names


def app_templates() -> list[str]:
    """What the app's RBAC role lets it publish: the templates of the topic spaces it is scoped to."""
    by_name = dict(topic_spaces().values())
    return [t for name in publisher_role_scopes() for t in by_name[name]]


@cache
def routes() -> tuple[Subscription, ...]:
    """The namespace topic's push subscriptions, one per item of the `routes` loop."""
    bicep = eventgrid()
    match = re.search(r"resource hubSubscriptions [^=]+=\s*\[\s*for \((\w+), \w+\) in (\w+):", bicep.text)
    assert match, "hubSubscriptions is a loop over an array variable"
    item_name, array = match.groups()
    subscriptions = resource(bicep, "hubSubscriptions")
    return tuple(subscription_of(subscriptions, {**literal_scope(bicep), item_name: item})
                 for item in loop_items(bicep, array))


@cache
def enrichments() -> tuple[dict[str, str], dict[str, str]]:
    """(dynamic, static) routing enrichments of the routed namespace."""
    found = routed_configuration().get("routingEnrichments")
    assert found is not None, "routing has no enrichments"
    routed = [r for r in template(ROUTING_BICEP).resources if r.type_name == "Microsoft.EventGrid/namespaces"]
    assert len(routed) == 1
    assert "topicSpacesConfiguration: topicSpacesConfiguration" in ROUTING_BICEP.read_text(), \
        "the routing module writes the configuration it is given"
    out: tuple[dict[str, str], dict[str, str]] = ({}, {})
    for kind, target in zip(("dynamic", "static"), out, strict=True):
        for item in found.get(kind, []):
            target[str(item["key"])] = str(item["value"])
    return out


def destinations(topic: str, publisher: Client) -> set[str]:
    """The subscriptions (hubs) that deliver what ``publisher`` publishes on ``topic``."""
    dynamic, static = enrichments()
    event = routed_event(topic, publisher, dynamic, static)
    return {s.name for s in routes() if s.delivers(event)}


# --------------------------------------------------------------------------- (a) what the app publishes


@pytest.mark.parametrize(
    "topic",
    ["devices/cam-1/commands/reboot", "devices/Cam.2:x/commands/set-rate", "broadcast/update",
     "groups/line-1/broadcast/update"],
)
def test_the_apps_role_lets_it_publish_commands_and_broadcasts(topic: str) -> None:
    assert may_use(app_templates(), APP, topic)


@pytest.mark.parametrize(
    "topic",
    ["devices/cam-1/telemetry", "devices/cam-1/inference", "devices/cam-1/commands/c-1/response",
     "devices/cam-1/commands", "devices/a/b/commands/reboot", "broadcast/a/b", "groups/line-1/broadcast",
     "groups/a/b/broadcast/x", "alerts/x"],
)
def test_the_apps_role_lets_it_publish_nothing_else(topic: str) -> None:
    assert not may_use(app_templates(), APP, topic)


def test_the_apps_topic_space_has_wildcards_only_and_no_client_group() -> None:
    (scoped,) = publisher_role_scopes()
    ((symbol, (_, templates)),) = [(s, v) for s, v in topic_spaces().items() if v[0] == scoped]
    assert sorted(templates) == sorted(["devices/+/commands/+", "broadcast/+", "groups/+/broadcast/+"])
    assert all("${" not in t for t in templates), "the app has no authentication name or attributes of a device"
    assert [b for b in bindings() if b[1] == symbol] == [], "no MQTT client may use the app's topic space"


def test_no_principal_holds_a_topic_space_role_anywhere_else() -> None:
    for path in sorted(INFRA.rglob("*.bicep")):
        text = path.read_text(encoding="utf-8")
        assert TOPIC_SPACES_SUBSCRIBER not in text, path
        if path != RBAC_BICEP:
            assert TOPIC_SPACES_PUBLISHER not in text, path
    assert publisher_role_scopes() == {"cloud-publish"}


# --------------------------------------------------------------------------- (b) what a device receives


def test_a_device_receives_its_own_commands() -> None:
    assert may_use(device_templates("Subscriber"), device("cam-1"), "devices/cam-1/commands/reboot")


@pytest.mark.parametrize(
    "topic",
    ["devices/cam-1/commands/c-1/response", "devices/cam-2/commands/reboot", "devices/cam-1/telemetry",
     "devices/cam-1/commands"],
)
def test_a_device_receives_neither_its_own_responses_nor_other_devices_commands(topic: str) -> None:
    assert not may_use(device_templates("Subscriber"), device("cam-1", "line-1"), topic)


def test_a_device_receives_broadcasts_to_all_and_to_its_own_group_only() -> None:
    subscribe = device_templates("Subscriber")
    grouped, ungrouped = device("cam-1", "line-1"), device("cam-2")
    for client in (grouped, ungrouped):
        assert may_use(subscribe, client, "broadcast/update")
    assert may_use(subscribe, grouped, "groups/line-1/broadcast/update")
    assert not may_use(subscribe, grouped, "groups/line-2/broadcast/update")
    assert not may_use(subscribe, ungrouped, "groups/line-1/broadcast/update")


def test_the_device_subscriber_templates() -> None:
    assert sorted(device_templates("Subscriber")) == sorted([
        "devices/${client.authenticationName}/commands/+",
        "broadcast/#",
        "groups/${client.attributes.group}/broadcast/#",
    ])


@pytest.mark.parametrize(
    ("topic", "allowed"),
    [
        ("devices/cam-1/telemetry", True),
        ("devices/cam-1/inference", True),
        ("devices/cam-1/commands/c-1/response", True),
        ("devices/cam-2/telemetry", False),
        ("devices/cam-2/commands/c-1/response", False),
        ("devices/cam-1/commands/reboot", False),
        ("devices/cam-1/commands/c-1/response/x", False),
        ("broadcast/update", False),
        ("groups/line-1/broadcast/update", False),
    ],
)
def test_a_device_publishes_its_uplink_and_its_responses_only(topic: str, allowed: bool) -> None:
    assert may_use(device_templates("Publisher"), device("cam-1", "line-1"), topic) is allowed


# --------------------------------------------------------------------------- (c) where the broker routes it


@pytest.mark.parametrize("device_id", ["cam-1", "commands", "Commands", "telemetry", "response", "inference",
                                       "a.b:c_d"])
def test_what_a_device_publishes_reaches_exactly_its_hub(device_id: str) -> None:
    client = device(device_id, "line-1")
    expected = {
        f"devices/{device_id}/telemetry": {"to-telemetry"},
        f"devices/{device_id}/inference": {"to-inference"},
        **{f"devices/{device_id}/commands/{command_id}/response": {"to-command-responses"}
           for command_id in ("c-1", "telemetry", "inference", "response", "Telemetry")},
    }
    for topic, hubs in expected.items():
        assert may_use(device_templates("Publisher"), client, topic), topic
        assert destinations(topic, client) == hubs, topic


@pytest.mark.parametrize("name", ["reboot", "telemetry", "inference", "response", "Telemetry", "RESPONSE"])
@pytest.mark.parametrize("device_id", ["cam-1", "commands"])
def test_a_command_goes_nowhere_whatever_its_name(device_id: str, name: str) -> None:
    topic = f"devices/{device_id}/commands/{name}"
    assert destinations(topic, APP) == set()
    assert may_use(app_templates(), APP, topic)


@pytest.mark.parametrize("topic", ["broadcast/telemetry", "broadcast/response", "groups/line-1/broadcast/inference"])
def test_a_broadcast_goes_nowhere(topic: str) -> None:
    assert destinations(topic, APP) == set()
    assert may_use(app_templates(), APP, topic)


@given(device_id=DEVICE_IDS, command_id=COMMAND_NAMES, name=COMMAND_NAMES, group=COMMAND_NAMES)
def test_any_device_message_reaches_one_hub_and_nothing_the_app_publishes_is_routed(
    device_id: str, command_id: str, name: str, group: str
) -> None:
    client = device(device_id, group)
    for topic, hub in ((f"devices/{device_id}/telemetry", "to-telemetry"),
                       (f"devices/{device_id}/inference", "to-inference"),
                       (f"devices/{device_id}/commands/{command_id}/response", "to-command-responses")):
        assert may_use(device_templates("Publisher"), client, topic)
        assert destinations(topic, client) == {hub}
    for topic in (f"devices/{device_id}/commands/{name}", f"broadcast/{name}", f"groups/{group}/broadcast/{name}"):
        assert destinations(topic, APP) == set()
        assert may_use(app_templates(), APP, topic)


def test_the_hubs_take_only_what_a_device_published() -> None:
    dynamic, _ = enrichments()
    role_keys = [key for key, value in dynamic.items() if value == "${client.attributes.role}"]
    assert len(role_keys) == 1, "a routing enrichment carries the publisher's role attribute"
    role = str(literal_scope(eventgrid())["deviceRoleAttribute"])
    for subscription in routes():
        assert Filter("StringIn", role_keys[0], (role,)) in subscription.filters, subscription.name
    # The role the filters ask for is the one every device client gets and the client group selects.
    clients = resource(eventgrid(), "clients")
    assert clients.body is not None
    assert "role: deviceRoleAttribute" in clients.body.text
    group = resource(eventgrid(), "deviceGroup")
    assert group.body is not None
    assert "attributes.role = \\'${deviceRoleAttribute}\\'" in group.body.text


# --------------------------------------------------------------------------- the model follows the documentation


def test_topic_matching_follows_the_mqtt_wildcards() -> None:
    # The docs' examples: "machines/+/alert" and "machines/#".
    assert topic_matches("machines/+/alert", "machines/temp/alert")
    assert not topic_matches("machines/+/alert", "machines/temp/x/alert")
    for topic in ("machines", "machines/temp", "machines/temp/alert"):
        assert topic_matches("machines/#", topic)
    assert not topic_matches("machines/+", "machines")
    assert not topic_matches("machines/temp", "machines/Temp")


def test_variables_take_the_clients_values_within_one_segment() -> None:
    client = Client("machine1", {"area": "section1"})
    assert substitute("area/${client.attributes.area}/telemetry", client) == "area/section1/telemetry"
    assert (substitute("machines/${client.authenticationName}.factory1/temp", client)
            == "machines/machine1.factory1/temp")
    assert substitute("area/${client.attributes.zone}/telemetry", client) is None
    assert substitute("devices/${client.authenticationName}/x", Client("a/b")) is None
    with pytest.raises(ValueError, match="unknown variable"):
        substitute("devices/${principal.name}/x", client)


def test_filters_follow_the_documented_operators() -> None:
    event = {"type": "MQTT.EventPublished", "subject": "Devices/X/Telemetry", "role": ""}
    assert Filter("StringEndsWith", "subject", ("/telemetry",)).matches(event)  # not case-sensitive
    assert Filter("StringBeginsWith", "subject", ("groups/", "devices/")).matches(event)  # OR of values
    assert not Filter("StringNotContains", "subject", ("/x/",)).matches(event)
    assert Filter("StringNotEndsWith", "subject", ("/inference",)).matches(event)
    assert not Filter("StringIn", "role", ("edge-device",)).matches(event)
    assert not Filter("StringIn", "absent", ("x",)).matches(event)  # missing key: not matched ...
    assert not Filter("StringNotContains", "absent", ("x",)).matches(event)
    assert Filter("StringNotIn", "absent", ("x",)).matches(event)  # ... but for StringNotIn
    both = Subscription("s", ("MQTT.EventPublished",), (Filter("StringBeginsWith", "subject", ("devices/",)),
                                                        Filter("StringEndsWith", "subject", ("/inference",))))
    assert not both.delivers(event)  # AND of filters
    assert not Subscription("s", ("Other",), ()).delivers(event)
    with pytest.raises(ValueError, match="not modelled"):
        Filter("NumberIn", "subject", ("1",)).matches(event)
