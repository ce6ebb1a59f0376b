"""function.bicep: the app's settings cover what the code and its bindings read, with
identity-based connections, on a locked-down Flex Consumption app."""

from __future__ import annotations

import re

from tests.support.bicep_parse import Value
from tests.support.infra import (
    FUNCTION_BICEP,
    HUB_SETTING_PARAMS,
    app_settings,
    bicep,
    literal,
    prop,
    resources_of,
    sample_settings,
)

CONNECTION_SETTINGS = ("AzureWebJobsStorage", "DataStorage", "EventHubConnection")
# %SETTING% references of the contract's Event Hubs triggers (used in addition to the real app's).
CONTRACT_BINDING_SETTINGS = {
    "TELEMETRY_HUB_NAME",
    "INFERENCE_HUB_NAME",
    "COMMAND_RESPONSES_HUB_NAME",
    "EVENTHUB_CONSUMER_GROUP",
}


def is_set(settings: Value, name: str) -> bool:
    keys = {k for k, _ in settings.props}
    if name in keys:
        return True
    return name in CONNECTION_SETTINGS and any(k.startswith(f"{name}__") for k in keys)


def binding_settings() -> tuple[set[str], set[str]]:
    """(%SETTING% names, connection names) of the app's bindings, plus the contract's."""
    percent = set(CONTRACT_BINDING_SETTINGS)
    connections = {"EventHubConnection"}
    # The app's functions as the worker indexed them (get_functions() may run once).
    from standins.invoke import FUNCTIONS

    for function in FUNCTIONS.values():
        for binding in function.raw_bindings:
            for key, raw in binding.items():
                value = str(getattr(raw, "value", raw))
                percent.update(re.findall(r"%([A-Za-z0-9_]+)%", value))
                if key == "connection" and value:
                    connections.add(value)
    return percent, connections


def settings_param_value(name: str) -> str:
    value = app_settings().get(name)
    assert value is not None, f"app setting {name} missing"
    return value.text


def test_every_setting_the_code_reads_is_set() -> None:
    settings = app_settings()
    missing = [name for name in sample_settings() if not is_set(settings, name)]
    assert missing == []


def test_connection_settings_are_identity_based() -> None:
    keys = {k for k, _ in app_settings().props}
    for name in CONNECTION_SETTINGS:
        assert name not in keys, f"{name} must not hold a connection string"
        assert f"{name}__credential" in keys
        assert f"{name}__clientId" in keys
    assert {
        "AzureWebJobsStorage__blobServiceUri",
        "DataStorage__blobServiceUri",
        "DataStorage__tableServiceUri",
    } <= keys
    assert "EventHubConnection__fullyQualifiedNamespace" in keys
    for key, value in app_settings().props:
        assert "AccountKey=" not in value.text, key
        assert "SharedAccessKey" not in value.text, key


def test_binding_settings_resolve() -> None:
    percent, connections = binding_settings()
    settings = app_settings()
    assert [s for s in sorted(percent) if not is_set(settings, s)] == []
    keys = {k for k, _ in settings.props}
    for connection in connections:
        assert connection in keys or any(k.startswith(f"{connection}__") for k in keys), connection


def test_fixed_setting_values() -> None:
    settings = app_settings()
    assert literal(settings, "COMMAND_TRANSPORT") == "eventgrid"
    for name in ("MQTT_USERNAME", "MQTT_PASSWORD"):
        assert literal(settings, name) == ""
    assert "FUNCTIONS_WORKER_RUNTIME" not in {k for k, _ in settings.props}  # Flex: from functionAppConfig
    assert settings_param_value("EVENTGRID_MQTT_HOSTNAME") == "eventGridMqttHostname"
    assert settings_param_value("EVENTHUB_CONSUMER_GROUP") == "consumerGroupName"
    assert settings_param_value("ALERT_RULES") == "alertRules"
    for setting, param in HUB_SETTING_PARAMS.items():
        assert settings_param_value(setting) == param


def test_function_app_on_flex_consumption() -> None:
    (plan,) = resources_of("Microsoft.Web/serverfarms")
    assert literal(plan.body, "sku.name") == "FC1"
    assert literal(plan.body, "sku.tier") == "FlexConsumption"
    assert literal(plan.body, "properties.reserved") is True
    (site,) = resources_of("Microsoft.Web/sites")
    assert literal(site.body, "kind") == "functionapp,linux"
    assert literal(site.body, "properties.httpsOnly") is True
    assert literal(site.body, "properties.siteConfig.minTlsVersion") == "1.2"
    assert literal(site.body, "properties.siteConfig.ftpsState") == "Disabled"
    assert literal(site.body, "properties.functionAppConfig.runtime.name") == "python"
    version = prop(site.body, "properties.functionAppConfig.runtime.version")
    assert version is not None
    assert version.text == "pythonVersion"
    default = bicep(FUNCTION_BICEP).params["pythonVersion"].default
    assert default is not None
    assert default.literal == "3.13"  # docs/running.md, "Python version and the worker"
    assert literal(site.body, "properties.functionAppConfig.deployment.storage.type") == "blobContainer"
    assert (
        literal(site.body, "properties.functionAppConfig.deployment.storage.authentication.type")
        == "UserAssignedIdentity"
    )
    assert literal(site.body, "identity.type") == "UserAssigned"
    tags = prop(site.body, "tags")
    assert tags is not None
    assert "'azd-service-name': 'api'" in tags.text
    for policy in resources_of("Microsoft.Web/sites/basicPublishingCredentialsPolicies"):
        assert literal(policy.body, "properties.allow") is False
