"""eventgrid.bicep and the lifecycle subscription: devices confined to their topics,
routing to the hubs, and routed messages not delivered kept in their own container."""

from __future__ import annotations

from tests.support.broker_model import literal_scope, resolve
from tests.support.infra import (
    INFRA,
    MAIN_BICEP,
    ROOT,
    bicep,
    literal,
    prop,
    resources_of,
    role_of,
    string_items,
)

LIFECYCLE_EVENT_TYPES = {
    "Microsoft.EventGrid.MQTTClientSessionConnected",
    "Microsoft.EventGrid.MQTTClientSessionDisconnected",
    "Microsoft.EventGrid.MQTTClientCreatedOrUpdated",
    "Microsoft.EventGrid.MQTTClientDeleted",
}


def topic_spaces() -> dict[str, list[str]]:
    out = {}
    for ts in resources_of("Microsoft.EventGrid/namespaces/topicSpaces"):
        out[str(literal(ts.body, "name"))] = string_items(prop(ts.body, "properties.topicTemplates"))
    return out


def test_topic_spaces_confine_each_device_to_its_own_topics() -> None:
    device = "${client.authenticationName}"
    spaces = topic_spaces()
    names = {r.symbol: str(literal(r.body, "name")) for r in resources_of("Microsoft.EventGrid/namespaces/topicSpaces")}
    permissions: dict[str, set[str]] = {"Publisher": set(), "Subscriber": set()}
    for binding in resources_of("Microsoft.EventGrid/namespaces/permissionBindings"):
        ref = prop(binding.body, "properties.topicSpaceName")
        assert ref is not None
        space = str(ref.literal) if ref.is_literal else names[ref.text.removesuffix(".name")]
        permissions[str(literal(binding.body, "properties.permission"))].update(spaces[space])
        group = prop(binding.body, "properties.clientGroupName")
        assert group is not None
        assert group.text == "deviceGroup.name"
    assert permissions["Publisher"] == {
        f"devices/{device}/telemetry",
        f"devices/{device}/inference",
        f"devices/{device}/commands/+/response",
    }
    # commands/+ and not commands/#: that would match the device's own responses one level below.
    assert permissions["Subscriber"] == {
        f"devices/{device}/commands/+",
        "broadcast/#",
        "groups/${client.attributes.group}/broadcast/#",
    }
    for templates in permissions.values():
        assert all(t.startswith((f"devices/{device}/", "broadcast/", "groups/${client.attributes.group}/"))
                   for t in templates)


def test_routing_enriches_with_the_device_id() -> None:
    from tests.support.command_path import routed_configuration

    namespaces = resources_of("Microsoft.EventGrid/namespaces")
    assert len(namespaces) == 2  # created, then updated with routing once the topic exists
    for ns in namespaces:
        assert literal(ns.body, "properties.minimumTlsVersionAllowed") == "1.2"
        assert literal(ns.body, "identity.type") == "SystemAssigned"
    routed = routed_configuration()
    assert routed["state"] == "Enabled" and routed["routeTopicResourceId"]
    assert any(item["value"] == "${client.authenticationName}" for item in routed["routingEnrichments"]["dynamic"])


def test_push_subscriptions_deliver_to_the_hubs_with_the_namespace_identity() -> None:
    (subs,) = resources_of("Microsoft.EventGrid/namespaces/topics/eventSubscriptions")
    assert subs.loop
    push = prop(subs.body, "properties.deliveryConfiguration.push.deliveryWithResourceIdentity")
    assert literal(push, "identity.type") == "SystemAssigned"
    assert literal(push, "destination.endpointType") == "EventHub"
    filters = prop(subs.body, "properties.filtersConfiguration.filters")
    assert filters is not None
    keys = {str(resolve(f.get("key"), literal_scope(bicep(INFRA / "app" / "eventgrid.bicep"))))  # type: ignore[arg-type]
            for f in filters.items}
    assert keys == {"subject", "clientrole"}  # the MQTT topic and the publisher's role (test_command_path.py)
    routes = bicep(INFRA / "app" / "eventgrid.bicep").variables["routes"]
    assert {str(literal(r, "suffix")) for r in routes.items} == {"/telemetry", "/inference", "/response"}
    assert {prop(r, "hub").text for r in routes.items} == {  # type: ignore[union-attr]
        "telemetryHubName",
        "inferenceHubName",
        "commandResponsesHubName",
    }


def test_device_clients_use_certificate_thumbprints_or_a_ca_chain_and_their_subject() -> None:
    (clients,) = resources_of("Microsoft.EventGrid/namespaces/clients")
    assert clients.loop
    authentication = prop(clients.body, "properties.clientCertificateAuthentication")
    assert authentication is not None
    text = authentication.text
    assert "empty(device.?thumbprints ?? [])" in text
    assert "'SubjectMatchesAuthenticationName'" in text and "'ThumbprintMatch'" in text
    (cas,) = resources_of("Microsoft.EventGrid/namespaces/caCertificates")
    assert cas.loop and cas.symbol == "deviceCas"
    assert "caCertificates: deviceCaCertificates" in (ROOT / "infra/main.bicep").read_text()


def test_lifecycle_subscription() -> None:
    """The system topic; its subscription is an output of main.bicep that the postdeploy
    hook creates (test_azd_up_hooks.py checks both against the type and the hook)."""
    (systopic,) = resources_of("Microsoft.EventGrid/systemTopics")
    assert literal(systopic.body, "properties.topicType") == "Microsoft.EventGrid.Namespaces"
    assert resources_of("Microsoft.EventGrid/systemTopics/eventSubscriptions") == []
    subscription = bicep(MAIN_BICEP).outputs["EVENTGRID_LIFECYCLE_SUBSCRIPTION"]
    assert set(string_items(prop(subscription, "properties.filter.includedEventTypes"))) == LIFECYCLE_EVENT_TYPES
    assert literal(subscription, "properties.destination.endpointType") == "AzureFunction"
    assert "/functions/client_lifecycle" in prop(subscription, "properties.destination.properties.resourceId").text  # type: ignore[union-attr]
    dead = prop(subscription, "properties.deadLetterWithResourceIdentity")
    assert literal(dead, "deadLetterDestination.endpointType") == "StorageBlob"


EVENTGRID_BICEP = INFRA / "app" / "eventgrid.bicep"
ROUTING_DEADLETTER_CONTAINER = "routing-deadletter"


def test_the_routing_dead_letter_container_exists_and_event_grid_is_given_it() -> None:
    main = bicep(MAIN_BICEP)
    assert main.variables["routingDeadLetterContainerName"].literal == ROUTING_DEADLETTER_CONTAINER
    for module_path in ("app/storage.bicep", "app/eventgrid.bicep"):
        module = next(m for m in main.modules if m.path == module_path)
        passed = prop(module.body, "params.routingDeadLetterContainerName")
        assert passed is not None, module_path
        assert passed.text == "routingDeadLetterContainerName", module_path
    assert main.outputs["ROUTING_DEADLETTER_CONTAINER"].text == "routingDeadLetterContainerName"
    (container,) = [
        r
        for r in bicep(INFRA / "app" / "storage.bicep").resources
        if r.type_name.endswith("blobServices/containers") and r.symbol == "routingDeadLetterContainer"
    ]
    assert prop(container.body, "name").text == "routingDeadLetterContainerName"  # type: ignore[union-attr]
    assert literal(container.body, "properties.publicAccess") == "None"
    (existing,) = [r for r in bicep(EVENTGRID_BICEP).resources if r.symbol == "routingDeadLetter"]
    assert existing.existing
    assert existing.type_name == "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert prop(existing.body, "name").text == "routingDeadLetterContainerName"  # type: ignore[union-attr]


def test_every_push_subscription_dead_letters_to_that_container_with_the_namespace_identity() -> None:
    subscriptions = resources_of("Microsoft.EventGrid/namespaces/topics/eventSubscriptions")
    assert subscriptions
    for subscription in subscriptions:
        assert literal(subscription.body, "properties.deliveryConfiguration.deliveryMode") == "Push"
        push = prop(subscription.body, "properties.deliveryConfiguration.push")
        dead = prop(push, "deadLetterDestinationWithResourceIdentity")
        assert dead is not None, f"{subscription.symbol}: no dead-letter destination, undelivered messages are lost"
        # The namespace's own (system-assigned) identity, the one that delivers.
        assert literal(dead, "identity.type") == "SystemAssigned"
        assert literal(push, "deliveryWithResourceIdentity.identity.type") == "SystemAssigned"
        assert literal(dead, "deadLetterDestination.endpointType") == "StorageBlob"
        assert prop(dead, "deadLetterDestination.properties.resourceId").text == "storage.id"  # type: ignore[union-attr]
        container = prop(dead, "deadLetterDestination.properties.blobContainerName")
        assert container is not None
        assert container.text == "storage::blobService::routingDeadLetter.name"
        depends = prop(subscription.body, "dependsOn")
        assert depends is not None
        assert "namespaceWritesDeadLetters" in {item.text for item in depends.items}
    namespaces = [r for r in bicep(EVENTGRID_BICEP).resources if r.type_name == "Microsoft.EventGrid/namespaces"]
    assert [literal(ns.body, "identity.type") for ns in namespaces] == ["SystemAssigned"]


def test_the_namespace_identity_writes_dead_letters_to_that_container_only() -> None:
    template = bicep(EVENTGRID_BICEP)
    granted = {}
    for assignment in template.resources:
        if assignment.type_name != "Microsoft.Authorization/roleAssignments":
            continue
        principal = prop(assignment.body, "properties.principalId")
        assert principal is not None
        if principal.text == "namespace.identity.principalId":
            scope = prop(assignment.body, "scope")
            assert scope is not None
            granted[role_of(assignment, template)] = scope.text
    assert granted == {
        "Azure Event Hubs Data Sender": "targetHubs[i]",
        "Storage Blob Data Contributor": "storage::blobService::routingDeadLetter",
    }
