"""What `azd up` grants and logs, checked offline from ``infra/``: storage data roles at
documented scopes, developers' access, diagnostic settings that keep to the capped
workspace, alerts on what needs a person, and App Service authentication.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.azd import DEPLOY_MD, azd_values, parameters_file
from tests.support.azd_model import variables
from tests.support.bicep_parse import BicepFile, Resource
from tests.support.infra import INFRA, MAIN_BICEP, role_of
from tests.support.infra import bicep as template

# --------------------------------------------------------------------------- storage data roles at documented scopes

# "Assign an Azure role for access to blob / queue / table data": a container, a queue, a
# table, the storage account, the resource group or the subscription.
DOCUMENTED_SCOPES = {
    "Microsoft.Storage/storageAccounts",
    "Microsoft.Storage/storageAccounts/blobServices/containers",
    "Microsoft.Storage/storageAccounts/queueServices/queues",
    "Microsoft.Storage/storageAccounts/tableServices/tables",
}


def scope_type(assignment: Resource, bicep: BicepFile) -> str:
    scope = assignment.body.get("scope")  # type: ignore[union-attr]
    assert scope is not None, assignment.symbol
    symbol = re.sub(r"\[[^]]*\]$", "", scope.text).split("::")[-1]
    (target,) = [r for r in bicep.resources if r.symbol == symbol]
    return target.type_name


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.bicep")), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_storage_data_roles_are_assigned_at_documented_scopes(path: Path) -> None:
    bicep = template(path)
    for assignment in bicep.resources:
        if assignment.type_name != "Microsoft.Authorization/roleAssignments":
            continue
        role = role_of(assignment, bicep)
        if role.startswith("Storage ") and " Data " in role:
            assert scope_type(assignment, bicep) in DOCUMENTED_SCOPES, (
                f"{path.name}: {assignment.symbol} is scoped to a {scope_type(assignment, bicep)}")


def test_the_host_queue_role_is_on_the_account_and_developers_get_each_app_table() -> None:
    rbac = template(INFRA / "app" / "rbac.bicep")
    by_symbol = {r.symbol: r for r in rbac.resources}
    assert scope_type(by_symbol["appQueueContributor"], rbac) == "Microsoft.Storage/storageAccounts"
    developer_tables = by_symbol["devTableContributor"]
    assert developer_tables.loop
    assert developer_tables.condition
    assert scope_type(developer_tables, rbac) == "Microsoft.Storage/storageAccounts/tableServices/tables"
    rbac_module = next(m for m in template(MAIN_BICEP).modules if m.path == "app/rbac.bicep")
    assert rbac_module.body.get("params").get("tableNames").text == "dataTables"  # type: ignore[union-attr]


def test_developers_may_send_to_each_ingest_hub_only_when_they_ask_for_it_too() -> None:
    """The simulator's Azure mode (--via eventhubs) and the routing dead-letter replay send
    to the ingest hubs as the developer: Azure Event Hubs Data Sender on each ingest hub,
    only when grantDeveloperAccess gives a developer principal and GRANT_DEVELOPER_HUB_SEND
    asks for it (what it sends is trusted like the broker's routing)."""
    rbac = template(INFRA / "app" / "rbac.bicep")
    senders = [r for r in rbac.resources if r.type_name == "Microsoft.Authorization/roleAssignments"
               and role_of(r, rbac) == "Azure Event Hubs Data Sender"
               and r.body.get("properties").get("principalId").text == "developerPrincipalId"]  # type: ignore[union-attr]
    by_scope = {r.body.get("scope").text: r for r in senders}  # type: ignore[union-attr]
    assert set(by_scope) == {"ingestHubs[i]", "alertsHub"}
    hubs = by_scope["ingestHubs[i]"]
    assert hubs.loop and hubs.condition
    text = (INFRA / "app" / "rbac.bicep").read_text(encoding="utf-8")
    condition = r"if \(withDeveloper && developerSendsToIngestHubs\)"
    assert re.search(rf"resource {hubs.symbol} [^\n]*\n\s*for [^\n]*: {condition}", text)
    assert azd_values({})["grantDeveloperHubSend"] is False
    assert scope_type(hubs, rbac) == "Microsoft.EventHub/namespaces/eventhubs"


def test_developers_get_blob_data_on_the_apps_containers_never_on_the_account() -> None:
    rbac = template(INFRA / "app" / "rbac.bicep")
    blob = [r for r in rbac.resources if r.type_name == "Microsoft.Authorization/roleAssignments"
            and role_of(r, rbac) == "Storage Blob Data Contributor"
            and r.body.get("properties").get("principalId").text == "developerPrincipalId"]  # type: ignore[union-attr]
    assert len(blob) == 1 and blob[0].loop and blob[0].condition
    assert scope_type(blob[0], rbac) == "Microsoft.Storage/storageAccounts/blobServices/containers"
    main = MAIN_BICEP.read_text(encoding="utf-8")
    assert "developerContainerNames: concat(dataBlobContainers, [lifecycleDeadLetterContainerName, " \
           "routingDeadLetterContainerName])" in main, "the app's containers, not the deployment package's"


# --------------------------------------------------------------------------- logs and the workspace's cap


def test_function_app_logs_go_to_application_insights_only() -> None:
    """No FunctionAppLogs diagnostic setting: on Flex Consumption they ignore host.json's
    levels and would fill the capped workspace that Application Insights writes to."""
    for path in INFRA.rglob("*.bicep"):
        for setting in template(path).resources:
            if setting.type_name == "Microsoft.Insights/diagnosticSettings":
                logs = setting.body.get("properties").get("logs")  # type: ignore[union-attr]
                categories = {item.get("category").literal for item in logs.items if item.get("category")}  # type: ignore[union-attr]
                assert "FunctionAppLogs" not in categories, path.name
    function = template(INFRA / "app" / "function.bicep")
    assert [r for r in function.resources if r.type_name == "Microsoft.Insights/diagnosticSettings"] == []


def test_the_workspace_cap_is_an_azd_variable_with_a_safe_default() -> None:
    assert variables(parameters_file())["logDailyQuotaGb"] == ["LOG_DAILY_QUOTA_GB"]
    assert azd_values({})["logDailyQuotaGb"] == 1
    assert template(MAIN_BICEP).params["logDailyQuotaGb"].default.literal == 1  # type: ignore[union-attr]
    monitoring = next(m for m in template(MAIN_BICEP).modules if m.path == "app/monitoring.bicep")
    assert monitoring.body.get("params").get("dailyQuotaGb").text == "logDailyQuotaGb"  # type: ignore[union-attr]
    docs = DEPLOY_MD.read_text(encoding="utf-8")
    assert "LOG_DAILY_QUOTA_GB" in docs

# --------------------------------------------------------------------------- what needs a person


def test_dead_lettered_routed_messages_and_life_cycle_events_raise_an_alert() -> None:
    alerts = template(INFRA / "app" / "alerts.bicep")
    rules = {r.symbol: r for r in alerts.resources if r.type_name == "Microsoft.Insights/metricAlerts"}
    assert set(rules) == {"routedDeadLetters", "lifecycleDeadLetters"}
    expected = {"routedDeadLetters": ("namespace.id", "Microsoft.EventGrid/namespaces", "SuccessfulDeadLetteredEvents"),
                "lifecycleDeadLetters": ("systemTopic.id", "Microsoft.EventGrid/systemTopics", "DeadLetteredCount")}
    for symbol, (scope, namespace, metric) in expected.items():
        body = rules[symbol].body
        assert [i.text for i in body.get("properties").get("scopes").items] == [scope]  # type: ignore[union-attr]
        (criterion,) = body.get("properties").get("criteria").get("allOf").items  # type: ignore[union-attr]
        assert (criterion.get("metricNamespace").literal, criterion.get("metricName").literal,  # type: ignore[union-attr]
                criterion.get("operator").literal, criterion.get("threshold").literal) == (  # type: ignore[union-attr]
            namespace, metric, "GreaterThan", 0)
    group = next(r for r in alerts.resources if r.type_name == "Microsoft.Insights/actionGroups")
    assert group.condition, "an action group only with ALERT_EMAIL"
    assert azd_values({}).get("alertEmail", "") == "", "no mail unless asked (azd leaves an empty value out)"
    assert azd_values({"ALERT_EMAIL": "ops@example.com"})["alertEmail"] == "ops@example.com"


def test_the_life_cycle_system_topic_logs_its_failed_deliveries() -> None:
    eventgrid = template(INFRA / "app" / "eventgrid.bicep")
    (setting,) = [r for r in eventgrid.resources if r.type_name == "Microsoft.Insights/diagnosticSettings"
                  and r.body.get("scope").text == "systemTopic"]  # type: ignore[union-attr]
    logs = setting.body.get("properties").get("logs").items  # type: ignore[union-attr]
    assert [(item.get("category").literal, item.get("enabled").literal) for item in logs] == [  # type: ignore[union-attr]
        ("DeliveryFailures", True)]


def diagnostic_logs(path: Path) -> dict[str, list[str]]:
    """The log categories each diagnostic setting of ``path`` sends (by its scope)."""
    found: dict[str, list[str]] = {}
    for resource in template(path).resources:
        if resource.type_name != "Microsoft.Insights/diagnosticSettings" or resource.body is None:
            continue
        text = (resource.body.get("properties").get("logs").text)  # type: ignore[union-attr]
        assert "categoryGroup" not in text, f"{path.name}: a whole category group grows with the fleet"
        found[resource.body.get("scope").text] = re.findall(r"'(\w+)'", text)  # type: ignore[union-attr]
    return found


def test_no_diagnostic_setting_sends_logs_that_grow_with_traffic_to_the_capped_workspace() -> None:
    """The workspace's daily cap is shared with Application Insights: the host's lease
    renewals and checkpoints, every successful MQTT connection and every Event Hubs
    operation must not be able to use it up (docs/deploy.md, Cost drivers)."""
    app = INFRA / "app"
    assert diagnostic_logs(app / "storage.bicep") == {"storage::blobService": ["StorageDelete"]}
    assert diagnostic_logs(app / "eventhubs.bicep") == {"namespace": ["OperationalLogs"]}
    eventgrid = diagnostic_logs(app / "eventgrid.bicep")
    assert all(c.startswith("Failed") for c in eventgrid["namespace"]) and len(eventgrid["namespace"]) == 4
    assert eventgrid["systemTopic"] == ["DeliveryFailures"]


def test_app_service_authentication_is_offered_and_only_then_are_principal_headers_trusted() -> None:
    """Issue 16, 8: Entra ID on the command API, function keys still accepted unless
    AUTH_REQUIRED; the app trusts principal headers exactly when the platform sets them."""
    function = template(INFRA / "app" / "function.bicep")
    (auth,) = [r for r in function.resources if r.type_name == "Microsoft.Web/sites/config"
               and r.body is not None and r.body.get("name").literal == "authsettingsV2"]  # type: ignore[union-attr]
    assert auth.condition
    text = (INFRA / "app" / "function.bicep").read_text(encoding="utf-8")
    assert "resource authentication 'config' = if (withAuth)" in text
    assert "unauthenticatedClientAction: authRequired ? 'Return401' : 'AllowAnonymous'" in text
    assert "TRUST_APP_SERVICE_AUTH: withAuth ? 'true' : 'false'" in text
    assert "'/api/health'" in text and "'/api/openapi.json'" in text
    assert azd_values({}).get("authClientId", "") == "" and azd_values({})["authRequired"] is False
    assert azd_values({"AUTH_CLIENT_ID": "11111111-2222-3333-4444-555555555555"})["authClientId"] == \
        "11111111-2222-3333-4444-555555555555"
