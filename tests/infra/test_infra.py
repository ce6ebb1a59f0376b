"""Offline checks of the infrastructure (infra/, azure.yaml, .funcignore).

Type checks need the Azure resource type definitions (Azure/bicep-types-az
``generated/``) in the folder named by ``BICEP_TYPES_DIR``; without it they are
skipped with the reason. Everything else runs everywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from .bicep_check import (
    BicepFile,
    Resource,
    TypeIndex,
    Value,
    check_file,
    check_role_ids,
    check_source,
    guid_literals,
    parse,
    syntax_errors,
)
from .broker_model import literal_scope, resolve

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
FUNCTION_BICEP = INFRA / "app" / "function.bicep"
MAIN_BICEP = INFRA / "main.bicep"

# --------------------------------------------------------------------------- roles

# Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
BUILTIN_ROLES: dict[str, str] = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42e0-ab88-20f7382dd24c": "Contributor",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "f526a384-b230-433a-b45c-95f59c4a2dec": "Azure Event Hubs Data Owner",
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
    "2b629674-e913-4c01-ae53-ef4638d8f975": "Azure Event Hubs Data Sender",
    "1e241071-0855-49ea-94dc-649edcd759de": "EventGrid Contributor",
    "d5a91429-5739-47e2-a06b-3470a27159e7": "EventGrid Data Sender",
    "a12b0b94-b317-4dcd-84a8-502ce99884c6": "EventGrid TopicSpaces Publisher",
    "4b0f2fd7-60b4-4eca-896f-4435034f8bf5": "EventGrid TopicSpaces Subscriber",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}

# The roles the templates may grant, each with why a narrower one does not serve.
ALLOWED_ROLES: dict[str, tuple[str, str]] = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": (
        "Storage Blob Data Owner",
        "Functions host with an identity-based AzureWebJobsStorage (Microsoft docs require Owner); app identity only",
    ),
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": (
        "Storage Blob Data Contributor",
        "Event Grid dead letters (life cycle, routing: one container each); developer data access",
    ),
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": ("Storage Queue Data Contributor", "Functions host queues"),
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": ("Storage Table Data Contributor", "app tables"),
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": ("Azure Event Hubs Data Receiver", "Event Hubs triggers, per hub"),
    "2b629674-e913-4c01-ae53-ef4638d8f975": ("Azure Event Hubs Data Sender", "alerts hub; Event Grid delivery per hub"),
    "a12b0b94-b317-4dcd-84a8-502ce99884c6": ("EventGrid TopicSpaces Publisher", "HTTP Publish of commands"),
    "3913510d-42f4-4e42-8a64-420c390055eb": ("Monitoring Metrics Publisher", "App Insights with Entra ID auth"),
}

BROAD_ROLES = {
    "Owner",
    "Contributor",
    "User Access Administrator",
    "Storage Account Contributor",
    "Azure Event Hubs Data Owner",
    "EventGrid Contributor",
}

# --------------------------------------------------------------------------- the app's names

CONNECTION_SETTINGS = ("AzureWebJobsStorage", "DataStorage", "EventHubConnection")
# %SETTING% references of the contract's Event Hubs triggers (used in addition to the real app's).
CONTRACT_BINDING_SETTINGS = {
    "TELEMETRY_HUB_NAME",
    "INFERENCE_HUB_NAME",
    "COMMAND_RESPONSES_HUB_NAME",
    "EVENTHUB_CONSUMER_GROUP",
}
APP_HUB_DEFAULTS = {
    "telemetryHubName": "telemetry",
    "inferenceHubName": "inference",
    "commandResponsesHubName": "command-responses",
    "alertsHubName": "alerts",
}
HUB_SETTING_PARAMS = {
    "TELEMETRY_HUB_NAME": "telemetryHubName",
    "INFERENCE_HUB_NAME": "inferenceHubName",
    "COMMAND_RESPONSES_HUB_NAME": "commandResponsesHubName",
    "ALERTS_HUB_NAME": "alertsHubName",
}

try:
    from shared.platform.storage_names import BLOB_CONTAINERS as _APP_CONTAINERS
    from shared.platform.storage_names import TABLES as _APP_TABLES

    APP_BLOB_CONTAINERS: tuple[str, ...] = tuple(_APP_CONTAINERS)
    APP_TABLES: tuple[str, ...] = tuple(_APP_TABLES)
except ImportError:  # the app module is not written yet
    APP_BLOB_CONTAINERS = ("telemetry", "inference", "deadletter")
    APP_TABLES = ("devices", "alerts", "commands", "fleetjobs")

LIFECYCLE_EVENT_TYPES = {
    "Microsoft.EventGrid.MQTTClientSessionConnected",
    "Microsoft.EventGrid.MQTTClientSessionDisconnected",
    "Microsoft.EventGrid.MQTTClientCreatedOrUpdated",
    "Microsoft.EventGrid.MQTTClientDeleted",
}

# --------------------------------------------------------------------------- helpers


@cache
def bicep(path: Path) -> BicepFile:
    return parse(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


def all_resources() -> Iterator[tuple[Path, Resource]]:
    for path in BICEP_FILES:
        for resource in bicep(path).resources:
            yield path, resource


def resources_of(type_name: str, *, include_existing: bool = False) -> list[Resource]:
    return [
        r
        for _, r in all_resources()
        if r.type_name.lower() == type_name.lower() and (include_existing or not r.existing)
    ]


def prop(value: Value | None, dotted: str) -> Value | None:
    """Follow a dotted path of object-literal keys."""
    current = value
    for key in dotted.split("."):
        if current is None or current.kind != "object":
            return None
        current = current.get(key)
    return current


def literal(value: Value | None, dotted: str) -> object:
    found = prop(value, dotted)
    assert found is not None, f"{dotted} is not set"
    assert found.is_literal, f"{dotted} should be a literal, is {found.text}"
    return found.literal if found.kind != "null" else None


def string_items(value: Value | None) -> list[str]:
    assert value is not None, "expected an array literal"
    assert value.kind == "array", "expected an array literal"
    out = []
    for item in value.items:
        assert item.kind == "string", f"expected a string literal, got {item.text}"
        assert item.literal is not None, f"expected a string literal, got {item.text}"
        out.append(str(item.literal))
    return out


def app_settings() -> Value:
    configs = [
        r
        for r in bicep(FUNCTION_BICEP).resources
        if r.type_name == "Microsoft.Web/sites/config"
        and r.body is not None
        and literal(r.body, "name") == "appsettings"
    ]
    assert len(configs) == 1, "function.bicep needs exactly one sites/config 'appsettings'"
    settings = prop(configs[0].body, "properties")
    assert settings is not None, "appsettings needs properties"
    assert settings.kind == "object", "appsettings properties must be an object literal"
    return settings


def sample_settings() -> list[str]:
    data = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))
    return [k for k in data["Values"] if k != "FUNCTIONS_WORKER_RUNTIME"]


def is_set(settings: Value, name: str) -> bool:
    keys = {k for k, _ in settings.props}
    if name in keys:
        return True
    return name in CONNECTION_SETTINGS and any(k.startswith(f"{name}__") for k in keys)


def type_index() -> TypeIndex:
    folder = os.environ.get("BICEP_TYPES_DIR", "")
    if not folder:
        pytest.skip("BICEP_TYPES_DIR is not set: resource types and properties are not checked against bicep-types")
    path = Path(folder)
    if not path.is_absolute():
        path = (ROOT / path).resolve()
    if not path.is_dir():
        pytest.skip(f"BICEP_TYPES_DIR={folder} is not a folder: resource types are not checked")
    return _index(path)


@cache
def _index(path: Path) -> TypeIndex:
    return TypeIndex(path)


def binding_settings() -> tuple[set[str], set[str]]:
    """(%SETTING% names, connection names) of the app's bindings, plus the contract's."""
    percent = set(CONTRACT_BINDING_SETTINGS)
    connections = {"EventHubConnection"}
    # The app's functions as the worker indexed them (get_functions() may run once).
    from tools.invoke import FUNCTIONS

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


# --------------------------------------------------------------------------- syntax and types


def test_bicep_files_exist() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in BICEP_FILES}
    assert "main.bicep" in names
    assert any(n.startswith("app/") for n in names)
    assert (INFRA / "main.parameters.json").is_file()
    assert (INFRA / "abbreviations.json").is_file()


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_parses_without_errors(path: Path) -> None:
    assert syntax_errors(path.read_text(encoding="utf-8"), str(path)) == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_modules_get_declared_parameters(path: Path) -> None:
    assert [str(f) for f in check_file(path, None)] == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_resources_match_bicep_types(path: Path) -> None:
    index = type_index()
    assert [str(f) for f in check_file(path, index)] == []


def test_api_versions_are_the_pinned_ones() -> None:
    pinned = {
        "microsoft.eventgrid": {"2025-02-15"},
        "microsoft.eventhub": {"2024-01-01"},
        "microsoft.storage": {"2024-01-01"},
        "microsoft.web": {"2024-04-01", "2024-11-01"},
        "microsoft.managedidentity": {"2023-01-31"},
        "microsoft.authorization": {"2022-04-01"},
        "microsoft.operationalinsights": {"2023-09-01"},
        "microsoft.resources": {"2024-03-01"},
    }
    for path, resource in all_resources():
        provider = resource.type_name.split("/")[0].lower()
        if provider == "microsoft.insights":
            insights = {"components": {"2020-02-02"}, "metricalerts": {"2018-03-01"}, "actiongroups": {"2023-01-01"}}
            expected = insights.get(resource.type_name.lower().rsplit("/", 1)[-1], {"2021-05-01-preview"})
        else:
            assert provider in pinned, f"{path}: unexpected provider {resource.type_name}"
            expected = pinned[provider]
        assert resource.api_version in expected, f"{path}: {resource.full_type}"


def test_no_registry_modules() -> None:
    for path in BICEP_FILES:
        for module in bicep(path).modules:
            assert not module.path.startswith(("br:", "br/", "ts:", "ts/")), f"{path}: {module.path}"


@pytest.mark.skipif(shutil.which("bicep") is None, reason="bicep CLI not on PATH")
def test_bicep_build() -> None:  # pragma: no cover - needs the CLI
    bicep_cli = shutil.which("bicep")
    assert bicep_cli is not None
    result = subprocess.run(
        [bicep_cli, "build", str(MAIN_BICEP), "--stdout"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- the checker cannot be fooled

SNIPPET_OK = """
resource ns 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: 'evhns-x'
  location: 'westeurope'
  sku: {
    name: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
  resource hub 'eventhubs' = {
    name: 'telemetry'
    properties: {
      partitionCount: 2
    }
  }
}
"""


def test_checker_accepts_a_correct_snippet() -> None:
    assert check_source(SNIPPET_OK, type_index()) == []


@pytest.mark.parametrize(
    ("mistake", "source", "expected"),
    [
        ("misspelled property", SNIPPET_OK.replace("disableLocalAuth", "disableLocalAuht"), "disableLocalAuht"),
        ("wrong case", SNIPPET_OK.replace("disableLocalAuth", "DisableLocalAuth"), "case-sensitive"),
        ("misspelled nested property", SNIPPET_OK.replace("partitionCount", "partitonCount"), "partitonCount"),
        ("wrong API version", SNIPPET_OK.replace("@2024-01-01", "@2024-01-02"), "unknown resource type"),
        (
            "unknown type",
            SNIPPET_OK.replace("Microsoft.EventHub/namespaces@", "Microsoft.EventHub/namespace@"),
            "unknown",
        ),
        ("enum value", SNIPPET_OK.replace("'Standard'", "'Standrd'"), "not an allowed value"),
        ("TLS value", SNIPPET_OK.replace("'1.2'", "'1.3'"), "not an allowed value"),
        ("wrong literal type", SNIPPET_OK.replace("partitionCount: 2", "partitionCount: 'two'"), "expected int"),
        ("read-only property", SNIPPET_OK.replace("disableLocalAuth: true", "serviceBusEndpoint: 'x'"), "read-only"),
        ("syntax error", SNIPPET_OK.replace("sku: {", "sku: {{"), "syntax"),
        (
            "missing required property",
            "resource st 'Microsoft.Storage/storageAccounts@2024-01-01' = {\n"
            "  name: 'st1'\n  location: 'westeurope'\n  sku: {\n    name: 'Standard_LRS'\n  }\n}\n",
            "kind: required property is missing",
        ),
    ],
)
def test_checker_reports_mistakes(mistake: str, source: str, expected: str) -> None:
    findings = check_source(source, type_index())
    assert any(expected in f.message for f in findings), f"{mistake} not reported: {findings}"


def test_checker_follows_discriminated_objects_and_for_bodies() -> None:
    source = """
resource sub 'Microsoft.EventGrid/namespaces/topics/eventSubscriptions@2025-02-15' = [for s in subs: {
  name: s
  properties: {
    deliveryConfiguration: {
      deliveryMode: 'Push'
      push: {
        deliveryWithResourceIdentity: {
          identity: { type: 'SystemAssigned' }
          destination: {
            endpointType: 'EventHub'
            properties: { resourceId: 'x', queueName: 'only-on-storage-queues' }
          }
        }
      }
    }
    filtersConfiguration: {
      filters: [
        { operatorType: 'StringEndsWith', key: 'subject', values: ['/telemetry'], value: true }
      ]
    }
  }
}]
"""
    messages = [f.message for f in check_source(source, type_index())]
    assert any("queueName" in m for m in messages), messages
    assert any("filters[0].value" in m for m in messages), messages


def test_checker_checks_module_parameters(tmp_path: Path) -> None:
    (tmp_path / "child.bicep").write_text("param required string\nparam optional int = 1\n", encoding="utf-8")
    source = "module m 'child.bicep' = {\n  name: 'm'\n  params: {\n    optinal: 2\n  }\n}\n"
    messages = [f.message for f in check_source(source, None, "main.bicep", tmp_path)]
    assert any("'optinal'" in m for m in messages), messages
    assert any("'required'" in m for m in messages), messages


def test_checker_reports_unknown_roles() -> None:
    source = """
resource ra 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid('x')
  properties: {
    roleDefinitionId: subscriptionResourceId(
      'Microsoft.Authorization/roleDefinitions', '00000000-1111-2222-3333-444444444444'
    )
    principalId: 'p'
  }
}
"""
    findings = check_role_ids(source, ALLOWED_ROLES)
    assert [f.line for f in findings] == [6]
    assert (
        check_role_ids(
            source.replace("00000000-1111-2222-3333-444444444444", "3913510d-42f4-4e42-8a64-420c390055eb"),
            ALLOWED_ROLES,
        )
        == []
    )


# --------------------------------------------------------------------------- RBAC


def test_allowed_roles_are_builtin_and_narrow() -> None:
    for role_id, (name, why) in ALLOWED_ROLES.items():
        assert BUILTIN_ROLES.get(role_id) == name
        assert name not in BROAD_ROLES
        assert why


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_role_ids_are_known_and_allowed(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for guid, line in guid_literals(text):
        assert guid in BUILTIN_ROLES, f"{path}:{line}: {guid} is not a known built-in role"
        assert BUILTIN_ROLES[guid] not in BROAD_ROLES, f"{path}:{line}: {BUILTIN_ROLES[guid]} is too broad"
    assert [str(f) for f in check_role_ids(text, ALLOWED_ROLES, str(path))] == []


def test_role_assignments_are_scoped_and_use_builtin_ids() -> None:
    assignments = resources_of("Microsoft.Authorization/roleAssignments")
    assert assignments
    for ra in assignments:
        assert ra.body is not None
        assert ra.body.get("scope") is not None, f"{ra.symbol}: role assignment without a scope (resource group wide)"
        role = prop(ra.body, "properties.roleDefinitionId")
        assert role is not None
        assert "subscriptionResourceId('Microsoft.Authorization/roleDefinitions'" in role.text
        assert prop(ra.body, "properties.principalType") is not None, f"{ra.symbol}: set principalType"


def test_app_identity_gets_what_it_uses() -> None:
    rbac = (INFRA / "app" / "rbac.bicep").read_text(encoding="utf-8")
    granted = {BUILTIN_ROLES[g] for g, _ in guid_literals(rbac)}
    assert {
        "Storage Blob Data Owner",
        "Storage Queue Data Contributor",
        "Storage Table Data Contributor",
        "Azure Event Hubs Data Receiver",
        "Azure Event Hubs Data Sender",
        "EventGrid TopicSpaces Publisher",
        "Monitoring Metrics Publisher",
    } <= granted
    # Blob Data Owner only once in all templates: the function app's host storage.
    owner = [
        g for p in BICEP_FILES for g, _ in guid_literals(p.read_text(encoding="utf-8")) if g.startswith("b7e6dc6d")
    ]
    assert len(owner) == 1
    eventgrid = (INFRA / "app" / "eventgrid.bicep").read_text(encoding="utf-8")
    assert "2b629674-e913-4c01-ae53-ef4638d8f975" in eventgrid  # namespace identity sends to the hubs


# --------------------------------------------------------------------------- settings and names


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


def test_hub_names_match_the_app_defaults() -> None:
    main = bicep(MAIN_BICEP)
    sample = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]
    for setting, param in HUB_SETTING_PARAMS.items():
        if sample.get(setting):
            assert sample[setting] == APP_HUB_DEFAULTS[param], setting
    for param, default in APP_HUB_DEFAULTS.items():
        declared = main.params[param].default
        assert declared is not None, param
        assert declared.literal == default, param
    function_module = next(m for m in main.modules if m.path == "app/function.bicep")
    params = prop(function_module.body, "params")
    for param in APP_HUB_DEFAULTS:
        passed = prop(params, param)
        assert passed is not None
        assert passed.text == param
    consumer_group = main.params["functionsConsumerGroupName"].default
    assert consumer_group is not None
    assert consumer_group.literal == "functions"
    passed_group = prop(params, "consumerGroupName")
    assert passed_group is not None
    assert passed_group.text == "functionsConsumerGroupName"
    alert_rules = main.params["alertRulesBase64"].default
    assert alert_rules is not None
    assert alert_rules.literal == ""


def test_containers_and_tables_match_the_app() -> None:
    main = bicep(MAIN_BICEP)
    assert tuple(string_items(main.variables["dataBlobContainers"])) == APP_BLOB_CONTAINERS
    assert tuple(string_items(main.variables["dataTables"])) == APP_TABLES
    assert main.variables["lifecycleDeadLetterContainerName"].literal == "lifecycle-deadletter"
    assert "deploymentContainerName" in main.variables
    storage = bicep(INFRA / "app" / "storage.bicep")
    containers = [r for r in storage.resources if r.type_name.endswith("blobServices/containers")]
    assert {r.symbol for r in containers} == {
        "deploymentContainer",
        "dataContainers",
        "lifecycleDeadLetterContainer",
        "routingDeadLetterContainer",
    }
    assert any(r.type_name.endswith("tableServices/tables") and r.loop for r in storage.resources)


# --------------------------------------------------------------------------- security defaults


def test_storage_is_secure_by_default() -> None:
    (account,) = resources_of("Microsoft.Storage/storageAccounts")
    assert literal(account.body, "properties.allowSharedKeyAccess") is False
    assert literal(account.body, "properties.allowBlobPublicAccess") is False
    assert literal(account.body, "properties.minimumTlsVersion") == "TLS1_2"
    assert literal(account.body, "properties.supportsHttpsTrafficOnly") is True
    for container in resources_of("Microsoft.Storage/storageAccounts/blobServices/containers"):
        assert literal(container.body, "properties.publicAccess") == "None"


def test_event_hubs_is_secure_by_default() -> None:
    (namespace,) = resources_of("Microsoft.EventHub/namespaces")
    assert literal(namespace.body, "properties.disableLocalAuth") is True
    assert literal(namespace.body, "properties.minimumTlsVersion") == "1.2"
    assert literal(namespace.body, "sku.name") == "Standard"
    hubs = resources_of("Microsoft.EventHub/namespaces/eventhubs")
    for hub in hubs:
        assert prop(hub.body, "properties.partitionCount") is not None
        assert prop(hub.body, "properties.messageRetentionInDays") is not None
    assert resources_of("Microsoft.EventHub/namespaces/eventhubs/consumergroups")


def test_monitoring_has_local_auth_off() -> None:
    (insights,) = resources_of("Microsoft.Insights/components")
    assert literal(insights.body, "properties.DisableLocalAuth") is True
    (workspace,) = resources_of("Microsoft.OperationalInsights/workspaces")
    assert literal(workspace.body, "properties.features.disableLocalAuth") is True
    settings = app_settings()
    auth = settings.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
    assert auth is not None
    assert "Authorization=AAD" in auth.text


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


# --------------------------------------------------------------------------- Event Grid MQTT


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
    from .test_command_path import routed_configuration

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
    hook creates (test_azd_up.py checks both against the type and the hook)."""
    (systopic,) = resources_of("Microsoft.EventGrid/systemTopics")
    assert literal(systopic.body, "properties.topicType") == "Microsoft.EventGrid.Namespaces"
    assert resources_of("Microsoft.EventGrid/systemTopics/eventSubscriptions") == []
    subscription = bicep(MAIN_BICEP).outputs["EVENTGRID_LIFECYCLE_SUBSCRIPTION"]
    assert set(string_items(prop(subscription, "properties.filter.includedEventTypes"))) == LIFECYCLE_EVENT_TYPES
    assert literal(subscription, "properties.destination.endpointType") == "AzureFunction"
    assert "/functions/client_lifecycle" in prop(subscription, "properties.destination.properties.resourceId").text  # type: ignore[union-attr]
    dead = prop(subscription, "properties.deadLetterWithResourceIdentity")
    assert literal(dead, "deadLetterDestination.endpointType") == "StorageBlob"


# --------------------------------------------------------------------------- routed messages not delivered

EVENTGRID_BICEP = INFRA / "app" / "eventgrid.bicep"
ROUTING_DEADLETTER_CONTAINER = "routing-deadletter"


def role_of(assignment: Resource, template: BicepFile) -> str:
    """The built-in role an assignment grants, its id written literally, in a variable or
    in a member of an object variable (``roles.storageBlobDataOwner``)."""
    role = prop(assignment.body, "properties.roleDefinitionId")
    assert role is not None
    match = re.search(r",\s*'?([A-Za-z0-9-]+)(?:\.([A-Za-z0-9]+))?'?\s*\)$", role.text)
    assert match, role.text
    ref, member = match.groups()
    variable = template.variables.get(ref)
    if variable is not None and member:
        variable = variable.get(member)
    return BUILTIN_ROLES[str(variable.literal) if variable is not None else ref]


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


# --------------------------------------------------------------------------- azd


def azure_yaml() -> str:
    return (ROOT / "azure.yaml").read_text(encoding="utf-8")


def test_azure_yaml_service() -> None:
    text = azure_yaml()
    match = re.search(r"^services:\n  api:\n((?:    .*\n)+)", text, re.MULTILINE)
    assert match, "azure.yaml needs service 'api'"
    body = match.group(1)
    assert re.search(r"^    project: \.$", body, re.MULTILINE)
    assert re.search(r"^    language: python$", body, re.MULTILINE)
    assert re.search(r"^    host: function$", body, re.MULTILINE)


def test_hooks_exist_for_both_shells() -> None:
    text = azure_yaml()
    for hook in ("postprovision", "postdeploy"):
        assert re.search(rf"^  {hook}:$", text, re.MULTILINE), hook
        for ext in ("sh", "ps1"):
            script = INFRA / "hooks" / f"{hook}.{ext}"
            assert script.is_file()
            assert f"./infra/hooks/{hook}.{ext}" in text
    for ext in ("sh", "ps1"):
        text = (INFRA / "hooks" / f"postdeploy.{ext}").read_text(encoding="utf-8")
        assert "EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL" in text
        assert "azd auth token" in text


def test_hooks_use_outputs_that_exist() -> None:
    outputs = set(bicep(MAIN_BICEP).outputs)
    builtin = {"AZURE_SUBSCRIPTION_ID", "AZURE_ENV_NAME"}
    settings_env = {
        "OFFLINE_COMMAND_POLICY",
        "ALERT_RULES_BASE64",
        "ALERT_RULES",  # only to say that it is not used any more
        "FLAPPING_DISCONNECTS",
        "FLAPPING_WINDOW_SECONDS",
        "GRANT_DEVELOPER_ACCESS",
    }
    # The postdeploy hook's pace (the tests run it without waiting).
    tuning = {"POSTDEPLOY_ATTEMPTS", "POSTDEPLOY_RETRY_SECONDS", "POSTDEPLOY_POLL_SECONDS", "POSTDEPLOY_POLLS"}
    for script in sorted((INFRA / "hooks").iterdir()):
        text = script.read_text(encoding="utf-8")
        names = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", text))
        names |= set(re.findall(r"\$env:([A-Z][A-Z0-9_]+)", text))
        names |= set(re.findall(r"env\(\"([A-Z][A-Z0-9_]+)\"", text))
        names |= set(re.findall(r"Get-(?:Setting|Number) '([A-Z][A-Z0-9_]+)'", text))
        names -= {"PYTHON"}
        unknown = sorted(n for n in names
                         if n not in outputs | builtin | settings_env | tuning and not n.startswith("LASTEXIT"))
        assert unknown == [], f"{script.name}: {unknown}"


def test_local_settings_hook_covers_every_setting() -> None:
    for name in ("postprovision.sh", "postprovision.ps1"):
        text = (INFRA / "hooks" / name).read_text(encoding="utf-8")
        for setting in sample_settings():
            assert setting in text or f"{setting}__" in text, f"{name}: {setting}"


def test_main_parameters_json() -> None:
    data: dict[str, Any] = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    declared = bicep(MAIN_BICEP).params
    for name in data["parameters"]:
        assert name in declared, name
    assert data["parameters"]["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert data["parameters"]["location"]["value"] == "${AZURE_LOCATION}"
    assert data["parameters"]["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


def test_names_follow_abbreviations_and_resource_token() -> None:
    abbrs = json.loads((INFRA / "abbreviations.json").read_text(encoding="utf-8"))
    text = MAIN_BICEP.read_text(encoding="utf-8")
    for used in set(re.findall(r"abbrs\.([A-Za-z]+)", text)):
        assert used in abbrs, used
    assert "toLower(uniqueString(subscription().id, environmentName, location))" in text
    assert "'azd-env-name': environmentName" in text


def test_outputs_for_azd() -> None:
    outputs = set(bicep(MAIN_BICEP).outputs)
    assert {
        "AZURE_LOCATION",
        "AZURE_TENANT_ID",
        "AZURE_RESOURCE_GROUP",
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_FUNCTION_URI",
        "EVENTHUB_FULLY_QUALIFIED_NAMESPACE",
        "EVENTGRID_MQTT_HOSTNAME",
        "AZURE_STORAGE_BLOB_ENDPOINT",
        "AZURE_STORAGE_TABLE_ENDPOINT",
    } <= outputs


def test_funcignore_keeps_only_what_runs() -> None:
    lines = {
        line.strip()
        for line in (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (
        "tests/",
        ".venv/",
        "node_modules/",
        "local.settings.json",
        "__pycache__/",
        ".pytest_cache/",
        ".mypy_cache/",
        ".ruff_cache/",
        "infra/",
        "tools/",
        ".demo/",  # make demo's Azurite data and local function key
        ".simulate/",  # the simulator's device keys
    ):
        assert required in lines, required
    for kept in ("function_app.py", "host.json", "requirements.txt", "shared/", "blueprints/", "shared", "blueprints"):
        assert kept not in lines, kept


# A tiny types.json in the bicep-types format, so that the checker's own tests
# run even where BICEP_TYPES_DIR is not available.
SYNTHETIC_TYPES: list[dict[str, Any]] = [
    {"$type": "StringType"},  # 0
    {"$type": "BooleanType"},  # 1
    {"$type": "IntegerType"},  # 2
    {"$type": "StringLiteralType", "value": "Basic"},  # 3
    {"$type": "StringLiteralType", "value": "Premium"},  # 4
    {"$type": "UnionType", "elements": [{"$ref": "#/3"}, {"$ref": "#/4"}, {"$ref": "#/0"}]},  # 5 open enum
    {"$type": "StringLiteralType", "value": "Queue"},  # 6
    {"$type": "StringLiteralType", "value": "Hub"},  # 7
    {
        "$type": "ObjectType",
        "name": "QueueTarget",
        "properties": {
            "kind": {"type": {"$ref": "#/6"}, "flags": 1},
            "queueName": {"type": {"$ref": "#/0"}, "flags": 0},
        },
    },  # 8
    {
        "$type": "ObjectType",
        "name": "HubTarget",
        "properties": {
            "kind": {"type": {"$ref": "#/7"}, "flags": 1},
            "hubName": {"type": {"$ref": "#/0"}, "flags": 0},
        },
    },  # 9
    {
        "$type": "DiscriminatedObjectType",
        "name": "Target",
        "discriminator": "kind",
        "baseProperties": {"label": {"type": {"$ref": "#/0"}, "flags": 0}},
        "elements": {"Queue": {"$ref": "#/8"}, "Hub": {"$ref": "#/9"}},
    },  # 10
    {"$type": "ArrayType", "itemType": {"$ref": "#/10"}},  # 11
    {
        "$type": "ObjectType",
        "name": "WidgetProperties",
        "properties": {
            "enabled": {"type": {"$ref": "#/1"}, "flags": 0},
            "tier": {"type": {"$ref": "#/5"}, "flags": 0},
            "count": {"type": {"$ref": "#/2"}, "flags": 0},
            "targets": {"type": {"$ref": "#/11"}, "flags": 0},
            "endpoint": {"type": {"$ref": "#/0"}, "flags": 2},
        },
    },  # 12
    {
        "$type": "ObjectType",
        "name": "Contoso.Widgets/widgets",
        "properties": {
            "name": {"type": {"$ref": "#/0"}, "flags": 9},
            "id": {"type": {"$ref": "#/0"}, "flags": 10},
            "kind": {"type": {"$ref": "#/0"}, "flags": 1},
            "properties": {"type": {"$ref": "#/12"}, "flags": 0},
        },
    },  # 13
    {"$type": "ResourceType", "name": "Contoso.Widgets/widgets@2025-01-01", "body": {"$ref": "#/13"}},  # 14
]

SYNTHETIC_OK = """
resource w 'Contoso.Widgets/widgets@2025-01-01' = [for i in range(0, 2): {
  name: 'w${i}'
  kind: 'round'
  properties: {
    enabled: true
    tier: 'Premium'
    count: 3
    targets: [
      { kind: 'Queue', queueName: 'q', label: 'a' }
      { kind: 'Hub', hubName: 'h' }
    ]
  }
}]
"""


@pytest.fixture
def synthetic_index(tmp_path: Path) -> TypeIndex:
    folder = tmp_path / "contoso.widgets" / "2025-01-01"
    folder.mkdir(parents=True)
    (folder / "types.json").write_text(json.dumps(SYNTHETIC_TYPES), encoding="utf-8")
    return TypeIndex(tmp_path)


def test_checker_accepts_a_correct_synthetic_snippet(synthetic_index: TypeIndex) -> None:
    assert check_source(SYNTHETIC_OK, synthetic_index) == []


@pytest.mark.parametrize(
    ("mistake", "before", "after", "expected"),
    [
        ("misspelled property", "enabled: true", "enabeld: true", "properties.enabeld: unknown property"),
        ("wrong API version", "@2025-01-01", "@2025-02-01", "unknown resource type"),
        ("enum value", "'Premium'", "'Premum'", "not an allowed value"),
        ("literal type", "count: 3", "count: 'three'", "expected int"),
        ("read-only", "count: 3", "endpoint: 'x'", "read-only"),
        ("required", "  kind: 'round'\n", "", "kind: required property is missing"),
        ("discriminated element", "queueName: 'q'", "hubName: 'q'", "targets[0].hubName: unknown property"),
        ("discriminator value", "kind: 'Hub'", "kind: 'Hubs'", "not an allowed value"),
    ],
)
def test_checker_reports_mistakes_offline(
    synthetic_index: TypeIndex, mistake: str, before: str, after: str, expected: str
) -> None:
    assert before in SYNTHETIC_OK
    findings = check_source(SYNTHETIC_OK.replace(before, after, 1), synthetic_index)
    assert any(expected in f.message for f in findings), f"{mistake} not reported: {findings}"
