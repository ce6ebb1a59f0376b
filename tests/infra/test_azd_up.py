"""`azd up` works the first time and every time after: what azd, Azure Resource Manager
and the hooks do with ``infra/``, checked offline.

* azd's parameter substitution (:mod:`tests.support.azd_model`, from azd's source) with
  hostile values, and what ``main.bicep`` makes of them (:mod:`tests.support.bicep_eval`);
* the hooks as ``sh`` runs them, in a scratch folder: ``postprovision.sh`` run twice;
  ``postdeploy.sh`` against a local stand-in for Azure Resource Manager that answers as
  the documented asynchronous-operation contract says ("Track asynchronous Azure
  operations": ``201`` with ``Azure-AsyncOperation``, then ``status`` ``InProgress``,
  ``Succeeded``, ``Failed`` or ``Canceled``), with a stand-in for ``azd auth token``
  (its output as azd's ``contracts.AuthTokenResult`` defines it) and an ``az`` that
  fails the test if it is called. The PowerShell twins cannot run here (no ``pwsh``);
  their text is checked for the same steps;
* role assignment scopes, diagnostic settings, the Event Hubs namespace, ``azure.yaml``.

What only Azure can tell is written in ``docs/deploy.md``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.arm_stand_in import ArmStandIn, serve
from tests.support.azd_model import AZD_VARIABLES, ParametersError, load_parameters, variables
from tests.support.bicep_check import BicepFile, Resource, check_source, parse
from tests.support.bicep_eval import DeploymentFailed, Unsupported, evaluate
from tests.support.infra import bicep as template
from tests.support.infra import role_of, type_index

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
HOOKS = INFRA / "hooks"
MAIN_BICEP = INFRA / "main.bicep"
PARAMETERS_JSON = INFRA / "main.parameters.json"
DEPLOY_MD = ROOT / "docs" / "deploy.md"

# Quotes, backslashes, newlines, a tab, non-ASCII, and what looks like a substitution.
HOSTILE = '[{"name": "quote\\"d", "path": "C:\\\\x", "note": "line one\nline two\tend", "é": "${HOME}"}]'


def parameters_file() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PARAMETERS_JSON.read_text(encoding="utf-8"))
    return dict(data["parameters"])


def parameter_types() -> dict[str, str]:
    return {name: param.type_text for name, param in template(MAIN_BICEP).params.items()}


def azd_values(env: dict[str, str]) -> dict[str, Any]:
    """The parameter values azd passes to the deployment of main.bicep for ``env``."""
    base = {"AZURE_ENV_NAME": "dev", "AZURE_LOCATION": "swedencentral"}
    return load_parameters(parameters_file(), base | env, parameter_types())


def decorators(name: str) -> str:
    """The decorators written above parameter ``name`` of main.bicep."""
    for node in template(MAIN_BICEP).root.named_children:
        if node.type == "parameter_declaration" and (node.named_children[0].text or b"").decode() == name:
            previous = node.prev_named_sibling
            return (previous.text or b"").decode() if previous is not None and previous.type == "decorators" else ""
    raise KeyError(name)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# --------------------------------------------------------------------------- 1. values azd substitutes


def test_azd_breaks_on_json_in_a_string_parameter_as_its_source_says() -> None:
    """The model of azd reproduces the failure: "error unmarshalling Bicep template parameters"."""
    with pytest.raises(ParametersError, match="unmarshalling"):
        load_parameters({"alertRules": {"value": "${ALERT_RULES=}"}}, {"ALERT_RULES": HOSTILE},
                        {"alertRules": "string"})
    assert load_parameters({"count": {"value": "${COUNT=2}"}}, {}, {"count": "int"}) == {"count": 2}
    assert load_parameters({"text": {"value": "${TEXT=}"}}, {}, {"text": "string"}) == {}  # default applies


@given(st.text(max_size=300))
@settings(max_examples=60, deadline=None)
def test_alert_rules_reach_the_function_app_exactly_whatever_they_hold(rules: str) -> None:
    values = azd_values({"ALERT_RULES_BASE64": b64(rules)})
    assert evaluate(template(MAIN_BICEP), "alertRules", values) == rules


def test_alert_rules_left_unset_mean_the_apps_defaults() -> None:
    values = azd_values({})
    assert "alertRulesBase64" not in values
    assert evaluate(template(MAIN_BICEP), "alertRules", values) == ""
    function_module = next(m for m in template(MAIN_BICEP).modules if m.path == "app/function.bicep")
    passed = function_module.body.get("params").get("alertRules")  # type: ignore[union-attr]
    assert passed is not None
    assert passed.text == "alertRules"


# Mapped parameters whose every valid value is a short name from a closed alphabet without
# quotes, backslashes or control characters (docs/deploy.md, Onboarding a device).
NAME_PARAMETERS = {
    "firstDeviceName": "Event Grid client names: letters, digits, - : . _",
    "firstDeviceThumbprint": "a SHA-256 thumbprint: hexadecimal digits",
    "alertEmail": "an email address: letters, digits, . _ % + - and one @ (no quoted local part)",
    "authClientId": "an Entra ID client id: a GUID",
}


@pytest.mark.parametrize("name", sorted(parameters_file()))
def test_every_mapped_parameter_survives_quotes_backslashes_and_newlines(name: str) -> None:
    """Free text travels base64-encoded and arrives exactly; every other mapped variable
    takes only values from a closed alphabet (numbers, booleans, @allowed words, names)."""
    (variable,) = variables(parameters_file())[name]
    kind = parameter_types()[name]
    if variable in AZD_VARIABLES:
        return  # set by azd itself, never by hand
    if variable.endswith("_BASE64"):
        values = azd_values({variable: b64(HOSTILE)})
        assert base64.b64decode(values[name]).decode("utf-8") == HOSTILE
        assert f"base64ToString({name})" in MAIN_BICEP.read_text(encoding="utf-8")
        return
    closed = kind in {"int", "bool"} or "@allowed" in decorators(name) or name in NAME_PARAMETERS
    assert closed, f"{variable} carries free text into {name}: carry it base64-encoded (*_BASE64)"
    with pytest.raises(ParametersError):
        azd_values({variable: HOSTILE})  # what azd does with it: the reason for this rule


def test_the_parameters_file_only_uses_references_the_model_knows() -> None:
    """azd substitutes inside each parameter; the model knows ${VAR} and ${VAR=default}."""
    text = json.dumps(parameters_file())
    assert text.count("$") == len(re.findall(r"\$\{[A-Z][A-Z0-9_]*(=[^}]*)?\}", text))


# --------------------------------------------------------------------------- hooks in a scratch folder

HOOK_OUTPUTS = {
    "AZURE_STORAGE_BLOB_ENDPOINT": "https://stx.blob.core.windows.net/",
    "AZURE_STORAGE_TABLE_ENDPOINT": "https://stx.table.core.windows.net/",
    "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "evhns-x.servicebus.windows.net",
    "EVENTHUB_LOCAL_CONSUMER_GROUP": "local",
    "EVENTGRID_MQTT_HOSTNAME": "evgns-x.swedencentral-1.ts.eventgrid.azure.net",
    "AZURE_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
}


@dataclass
class Tools:
    """A bin folder with stand-ins for azd and az, and the calls they saw."""

    folder: Path
    calls: Path
    token: str = "eyJ0eXAiOiJKV1Qi.standin.token"

    def seen(self, tool: str) -> list[str]:
        if not self.calls.exists():
            return []
        return [line.split(" ", 1)[1] for line in self.calls.read_text().splitlines() if line.startswith(tool + " ")]


@pytest.fixture
def tools(tmp_path: Path) -> Tools:
    folder = tmp_path / "bin"
    folder.mkdir()
    calls = tmp_path / "calls.log"
    scripts = {
        # azure-dev cli/azd/cmd/auth_token.go: `--output json` prints contracts.AuthTokenResult
        # {"token", "expiresOn"}, indented; not signed in, it fails on stderr.
        "azd": f"""#!/bin/sh
echo "azd $*" >> '{calls}'
[ "$1 $2" = "env set" ] && [ $# -eq 4 ] && exit 0
[ "$1 $2" = "auth token" ] || exit 2
if [ -n "${{STANDIN_LOGGED_OUT:-}}" ]; then
  echo 'ERROR: fetching token: not logged in, run `azd auth login` to login' >&2
  exit 1
fi
printf '{{\\n  "token": "%s",\\n  "expiresOn": "2030-01-01T00:00:00Z"\\n}}\\n' '{Tools.token}'
""",
        # The Azure CLI: the hooks must not need it.
        "az": f"""#!/bin/sh
echo "az $*" >> '{calls}'
exit 1
""",
    }
    for name, text in scripts.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return Tools(folder, calls)


def run_hook(name: str, cwd: Path, tools: Tools, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = f"{tools.folder}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin"
    return subprocess.run(
        ["sh", str(HOOKS / name)], cwd=cwd, env={"PATH": path, "HOME": str(cwd)} | env,
        capture_output=True, text=True, timeout=60, check=False,
    )


# --------------------------------------------------------------------------- 2. local.settings.json, every time


def test_postprovision_keeps_the_users_file_once_and_never_overwrites_it(tmp_path: Path, tools: Tools) -> None:
    mine = '{"IsEncrypted": false, "Values": {"MY_OWN": "setting"}}\n'
    (tmp_path / "local.settings.json").write_text(mine, encoding="utf-8")
    for _ in range(3):  # azd provision, and again, and again
        result = run_hook("postprovision.sh", tmp_path, tools, dict(HOOK_OUTPUTS))
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "local.settings.json.bak").read_text(encoding="utf-8") == mine
    written = json.loads((tmp_path / "local.settings.json").read_text(encoding="utf-8"))["Values"]
    assert written["EventHubConnection__fullyQualifiedNamespace"] == HOOK_OUTPUTS["EVENTHUB_FULLY_QUALIFIED_NAMESPACE"]
    assert written["MAX_FUTURE_SECONDS"] == "300"
    assert tools.seen("az") == []


def test_postprovision_writes_alert_rules_as_the_deployment_has_them(tmp_path: Path, tools: Tools) -> None:
    result = run_hook("postprovision.sh", tmp_path, tools, HOOK_OUTPUTS | {"ALERT_RULES_BASE64": b64(HOSTILE)})
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "local.settings.json").read_text(encoding="utf-8"))["Values"]
    assert written["ALERT_RULES"] == HOSTILE
    assert not (tmp_path / "local.settings.json.bak").exists()  # there was nothing of yours to keep


def test_postprovision_refuses_alert_rules_that_are_not_base64_without_echoing_them(
    tmp_path: Path, tools: Tools
) -> None:
    (tmp_path / "local.settings.json").write_text("{}", encoding="utf-8")
    secret = "not*base64*CANARY"
    result = run_hook("postprovision.sh", tmp_path, tools, HOOK_OUTPUTS | {"ALERT_RULES_BASE64": secret})
    assert result.returncode != 0
    assert "ALERT_RULES_BASE64 must be base64" in result.stderr
    assert "CANARY" not in result.stdout + result.stderr
    assert (tmp_path / "local.settings.json").read_text(encoding="utf-8") == "{}"


# --------------------------------------------------------------------------- 3. the life cycle subscription, without az


@pytest.fixture
def arm(tools: Tools) -> Iterator[ArmStandIn]:
    with serve(ArmStandIn(tools.token, outcomes=["Failed", "Succeeded"])) as stand_in:
        yield stand_in


RESOURCE_GROUP = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-dev"
MODULE_OUTPUTS = {
    "functionApp": {"outputs": {"id": f"{RESOURCE_GROUP}/providers/Microsoft.Web/sites/func-api-x"}},
    "storage": {"outputs": {"id": f"{RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/stx"}},
    "eventGrid": {"outputs": {"systemTopicId": f"{RESOURCE_GROUP}/providers/Microsoft.EventGrid/systemTopics/evgst-x"}},
}


def deployment_outputs(resource_manager: str) -> dict[str, str]:
    """The two outputs of main.bicep the postdeploy hook reads, as azd stores them (objects as JSON)."""
    symbols: dict[str, Any] = MODULE_OUTPUTS | {"environment": lambda: {"resourceManager": resource_manager}}
    url = evaluate(template(MAIN_BICEP), "EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL", symbols=symbols)
    body = evaluate(template(MAIN_BICEP), "EVENTGRID_LIFECYCLE_SUBSCRIPTION", symbols=symbols)
    return {"EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL": url, "EVENTGRID_LIFECYCLE_SUBSCRIPTION": json.dumps(body)}


FAST = {"POSTDEPLOY_RETRY_SECONDS": "0", "POSTDEPLOY_POLL_SECONDS": "0"}
needs_curl = pytest.mark.skipif(shutil.which("curl") is None,
                                reason="curl is not installed: the postdeploy hook sends its request with it")


@needs_curl
def test_postdeploy_subscribes_with_azds_token_and_no_azure_cli(
    tmp_path: Path, tools: Tools, arm: ArmStandIn
) -> None:
    """The first attempt fails as it does while the function is not indexed yet; the hook tries again."""
    outputs = deployment_outputs(arm.base + "/")
    result = run_hook("postdeploy.sh", tmp_path, tools, outputs | FAST | {"AZURE_TENANT_ID": "t-1"})
    assert result.returncode == 0, result.stderr
    assert "subscribed" in result.stdout
    assert "client_lifecycle was not found" in result.stderr
    assert len(arm.puts) == 2
    expected = json.loads(outputs["EVENTGRID_LIFECYCLE_SUBSCRIPTION"])
    assert arm.puts == [expected, expected]
    assert urlsplit(outputs["EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL"]).path == (
        f"{MODULE_OUTPUTS['eventGrid']['outputs']['systemTopicId']}/eventSubscriptions/client-lifecycle-to-function"
    )
    assert tools.seen("azd") == ["auth token --output json --tenant-id t-1"]
    assert tools.seen("az") == []
    assert tools.token not in result.stdout + result.stderr


@needs_curl
def test_postdeploy_on_a_second_azd_up_updates_the_subscription(
    tmp_path: Path, tools: Tools, arm: ArmStandIn
) -> None:
    arm.synchronous = True
    arm.outcomes = ["Succeeded"]
    result = run_hook("postdeploy.sh", tmp_path, tools, deployment_outputs(arm.base + "/") | FAST)
    assert result.returncode == 0, result.stderr
    assert len(arm.puts) == 1
    assert tools.seen("azd") == ["auth token --output json"]  # no tenant known: azd's own choice


@needs_curl
def test_postdeploy_without_an_azd_sign_in_says_what_to_do(tmp_path: Path, tools: Tools, arm: ArmStandIn) -> None:
    result = run_hook("postdeploy.sh", tmp_path, tools,
                      deployment_outputs(arm.base + "/") | FAST | {"STANDIN_LOGGED_OUT": "1"})
    assert result.returncode == 1
    assert "azd auth login" in result.stderr
    assert "azd hooks run postdeploy" in result.stderr
    assert arm.requests == []


@needs_curl
def test_postdeploy_stops_at_once_when_the_account_may_not_create_the_subscription(
    tmp_path: Path, tools: Tools, arm: ArmStandIn
) -> None:
    arm.refuse = True
    result = run_hook("postdeploy.sh", tmp_path, tools, deployment_outputs(arm.base + "/") | FAST)
    assert result.returncode == 1
    assert "HTTP 403" in result.stderr
    assert "does not have authorization" in result.stderr
    assert len(arm.puts) == 1


def test_postdeploy_before_provision_says_so(tmp_path: Path, tools: Tools) -> None:
    result = run_hook("postdeploy.sh", tmp_path, tools, {})
    assert result.returncode == 1
    assert "EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL is not set; run 'azd provision' first" in result.stderr
    assert tools.seen("azd") == []


def test_the_powershell_hooks_take_the_same_steps() -> None:
    """pwsh is not installed here: the Windows twins are read, not run."""
    deploy = (HOOKS / "postdeploy.ps1").read_text(encoding="utf-8")
    for step in ("azd auth token --output json", "EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL",
                 "$env:EVENTGRID_LIFECYCLE_SUBSCRIPTION", "Azure-AsyncOperation", "provisioningState",
                 "401, 403", "azd auth login", "azd hooks run postdeploy"):
        assert step in deploy, step
    provision = (HOOKS / "postprovision.ps1").read_text(encoding="utf-8")
    assert "-not (Test-Path 'local.settings.json.bak')" in provision
    assert "FromBase64String" in provision
    assert "ALERT_RULES_BASE64" in provision
    for script in HOOKS.iterdir():
        commands = [line for line in script.read_text(encoding="utf-8").splitlines()
                    if re.match(r"\s*(&\s*)?az\s", line)]
        assert commands == [], f"{script.name} runs the Azure CLI"


def test_the_lifecycle_subscription_matches_the_resource_type() -> None:
    """The output body, checked as the properties of Microsoft.EventGrid/systemTopics/eventSubscriptions."""
    main = template(MAIN_BICEP)
    url = main.outputs["EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL"].text
    match = re.search(r"/eventSubscriptions/\$\{lifecycleSubscriptionName\}\?api-version=([0-9a-z-]+)'$", url)
    assert match, url
    body = main.outputs["EVENTGRID_LIFECYCLE_SUBSCRIPTION"].text
    source = (f"resource s 'Microsoft.EventGrid/systemTopics/eventSubscriptions@{match.group(1)}' = {{\n"
              f"  name: 'client-lifecycle-to-function'\n{body.strip()[1:]}\n")
    assert check_source(source, type_index()) == []


def test_the_lifecycle_subscription_delivers_every_life_cycle_event_to_client_lifecycle() -> None:
    outputs = deployment_outputs("https://management.azure.com/")
    body = json.loads(outputs["EVENTGRID_LIFECYCLE_SUBSCRIPTION"])["properties"]
    assert set(body["filter"]["includedEventTypes"]) == {
        "Microsoft.EventGrid.MQTTClientSessionConnected",
        "Microsoft.EventGrid.MQTTClientSessionDisconnected",
        "Microsoft.EventGrid.MQTTClientCreatedOrUpdated",
        "Microsoft.EventGrid.MQTTClientDeleted",
    }
    assert body["eventDeliverySchema"] == "EventGridSchema"
    assert body["destination"] == {
        "endpointType": "AzureFunction",
        "properties": {"resourceId": MODULE_OUTPUTS["functionApp"]["outputs"]["id"] + "/functions/client_lifecycle",
                       "maxEventsPerBatch": 1, "preferredBatchSizeInKilobytes": 64},
    }
    assert body["retryPolicy"] == {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}
    dead = body["deadLetterWithResourceIdentity"]
    assert dead["identity"] == {"type": "SystemAssigned"}  # the system topic's, which holds the container role
    assert dead["deadLetterDestination"] == {
        "endpointType": "StorageBlob",
        "properties": {"resourceId": MODULE_OUTPUTS["storage"]["outputs"]["id"],
                       "blobContainerName": "lifecycle-deadletter"},
    }
    assert outputs["EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL"].startswith(
        "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000001/")


# --------------------------------------------------------------------------- 4. storage data roles at documented scopes

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


# --------------------------------------------------------------------------- 5. logs and the workspace's cap


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


# --------------------------------------------------------------------------- 6. first device, sessions, Event Hubs, azd


def device_clients(env: dict[str, str]) -> Any:
    return evaluate(template(MAIN_BICEP), "allDeviceClients", azd_values(env))


def test_a_first_device_gets_its_thumbprint() -> None:
    assert device_clients({}) == []
    assert device_clients({"FIRST_DEVICE_NAME": "cam-1", "FIRST_DEVICE_THUMBPRINT": "AB12"}) == [
        {"name": "cam-1", "thumbprints": ["AB12"]}
    ]


@pytest.mark.parametrize(("given", "missing"), [
    ({"FIRST_DEVICE_NAME": "cam-1"}, "FIRST_DEVICE_THUMBPRINT"),
    ({"FIRST_DEVICE_NAME": "cam-1", "FIRST_DEVICE_THUMBPRINT": ""}, "FIRST_DEVICE_THUMBPRINT"),
    ({"FIRST_DEVICE_THUMBPRINT": "AB12"}, "FIRST_DEVICE_NAME"),
])
def test_a_half_set_first_device_stops_the_deployment_with_a_clear_message(
    given: dict[str, str], missing: str
) -> None:
    with pytest.raises(DeploymentFailed) as failure:
        device_clients(given)
    message = str(failure.value)
    assert f"{missing} is empty" in message
    assert "docs/deploy.md" in message
    assert "cam-1" not in message
    assert "AB12" not in message


def test_the_evaluator_takes_only_the_branch_chosen_and_refuses_what_it_cannot_read() -> None:
    source = parse("param a string = ''\nvar ok = empty(a) ? 'none' : fail('boom')\n"
                   "var bad = !empty(a) ? 'x' : fail('boom')\nvar odd = a || b.c\nvar call = guid(a)\n")
    assert evaluate(source, "ok") == "none"
    with pytest.raises(DeploymentFailed, match="boom"):
        evaluate(source, "bad")
    with pytest.raises(Unsupported):
        evaluate(source, "odd")
    with pytest.raises(Unsupported):
        evaluate(source, "call")


def test_sessions_per_device_is_an_azd_variable_and_the_connect_example_keeps_to_it() -> None:
    assert variables(parameters_file())["maximumClientSessionsPerAuthenticationName"] == [
        "EVENTGRID_MAX_SESSIONS_PER_DEVICE"]
    assert azd_values({})["maximumClientSessionsPerAuthenticationName"] == 1
    assert azd_values({"EVENTGRID_MAX_SESSIONS_PER_DEVICE": "2"})["maximumClientSessionsPerAuthenticationName"] == 2
    docs = DEPLOY_MD.read_text(encoding="utf-8")
    assert "EVENTGRID_MAX_SESSIONS_PER_DEVICE" in docs
    # With one session per device, the example never runs two MQTT clients of one device at once:
    # no mosquitto client is left running in the background.
    statements = [s for block in re.findall(r"```sh\n(.*?)```", docs, re.DOTALL)
                  for s in re.sub(r"\\\n\s*", " ", block).splitlines()]
    clients = [s for s in statements if s.startswith("mosquitto_")]
    assert clients
    assert [s for s in clients if s.rstrip().endswith("&")] == []


def test_the_event_hubs_namespace_sets_no_kafka_flag() -> None:
    """kafkaEnabled is ignored on Standard (Kafka is always on there)."""
    namespaces = [r for r in template(INFRA / "app" / "eventhubs.bicep").resources
                  if r.type_name == "Microsoft.EventHub/namespaces"]
    assert namespaces
    for namespace in namespaces:
        assert namespace.body.get("properties").get("kafkaEnabled") is None  # type: ignore[union-attr]


def test_azure_yaml_requires_an_azd_that_honours_funcignore() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    match = re.search(r'^requiredVersions:\n  azd: "?>=\s*([0-9]+)\.([0-9]+)\.([0-9]+)"?$', text, re.MULTILINE)
    assert match, "azure.yaml needs requiredVersions.azd"
    assert tuple(int(g) for g in match.groups()) >= (1, 18, 0)  # .funcignore: azure-dev 1.18.0 (#5383)


# --------------------------------------------------------------------------- docs agree


def test_the_docs_list_every_variable_azd_maps() -> None:
    docs = DEPLOY_MD.read_text(encoding="utf-8")
    table = docs[docs.index("## Parameters"):docs.index("## Cost drivers")]
    for name, refs in variables(parameters_file()).items():
        for variable in refs:
            if variable not in AZD_VARIABLES - {"AZURE_LOCATION"}:
                assert f"`{variable}`" in table, f"{variable} ({name}) is not in the Parameters table"
    assert re.search(r"azd env set ALERT_RULES\s", docs) is None


# --------------------------------------------------------------------------- re-provision keeps routing


EVENTGRID_BICEP = INFRA / "app" / "eventgrid.bicep"


def namespace_writes(established: bool) -> tuple[Any, Any]:
    """The topic spaces configuration of the namespace's first write (eventgrid.bicep)
    and of its second (the routing module), for a provision with ``established``."""
    params = {"name": "evgns-abc", "maximumClientSessionsPerAuthenticationName": 1,
              "maximumSessionExpiryInHours": 1, "routingEstablished": established}
    symbols = {"resourceId": lambda kind, *names: f"/{kind}/{'/'.join(names)}"}
    eventgrid = template(EVENTGRID_BICEP)
    return (evaluate(eventgrid, "firstTopicSpaces", params, symbols),
            evaluate(eventgrid, "routedTopicSpaces", params, symbols))


def test_the_first_provision_routes_from_the_second_write_of_the_namespace() -> None:
    first, second = namespace_writes(established=False)
    assert "routeTopicResourceId" not in first, "the route topic does not exist before the namespace"
    assert second["routeTopicResourceId"] == "/Microsoft.EventGrid/namespaces/topics/evgns-abc/device-messages"
    assert {e["key"] for e in second["routingEnrichments"]["dynamic"]} == {"deviceid", "mqtttopic", "clientrole"}


def test_a_later_provision_keeps_routing_in_every_write_of_the_namespace() -> None:
    first, second = namespace_writes(established=True)
    assert first == second, "no write of the namespace switches routing off"
    assert first["routeTopicResourceId"].endswith("/device-messages")


def test_the_routing_module_writes_what_eventgrid_bicep_decides() -> None:
    routing = (INFRA / "app" / "eventgrid-routing.bicep").read_text(encoding="utf-8")
    assert "topicSpacesConfiguration: topicSpacesConfiguration" in routing
    assert "routingEnrichments" not in routing, "one source for the namespace's configuration"
    main = (INFRA / "main.bicep").read_text(encoding="utf-8")
    assert "routingEstablished: eventGridRoutingEstablished" in main
    assert azd_values({})["eventGridRoutingEstablished"] is False
    assert azd_values({"EVENTGRID_ROUTING_ESTABLISHED": "true"})["eventGridRoutingEstablished"] is True


def test_the_routing_module_waits_for_every_other_write_of_the_namespace() -> None:
    eventgrid = template(EVENTGRID_BICEP)
    text = EVENTGRID_BICEP.read_text(encoding="utf-8")
    block = text[text.index("module routing"):]
    block = block[:block.index("\n}\n")]
    waits = set(re.findall(r"^    (\w+)$", block[block.index("dependsOn"):], flags=re.M))
    others = {r.symbol for r in eventgrid.resources if not r.existing and r.symbol != "namespace"
              and r.type_name.startswith("Microsoft.EventGrid/")}
    assert others <= waits, f"the routing module writes the namespace while {sorted(others - waits)} may be written"


def test_postprovision_records_that_routing_exists_and_postdown_forgets_it(tmp_path: Path, tools: Tools) -> None:
    result = run_hook("postprovision.sh", tmp_path, tools, dict(HOOK_OUTPUTS))
    assert result.returncode == 0, result.stderr
    assert "env set EVENTGRID_ROUTING_ESTABLISHED true" in tools.seen("azd")
    result = run_hook("postdown.sh", tmp_path, tools, {})
    assert result.returncode == 0, result.stderr
    assert tools.seen("azd")[-1] == "env set EVENTGRID_ROUTING_ESTABLISHED false"
    for hook in ("postprovision.ps1", "postdown.ps1"):
        assert "azd env set EVENTGRID_ROUTING_ESTABLISHED" in (HOOKS / hook).read_text(encoding="utf-8")
    azure_yaml = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert "  postdown:" in azure_yaml and "run: ./infra/hooks/postdown.sh" in azure_yaml


# --------------------------------------------------------------------------- bounds and sovereign clouds


def test_a_device_has_one_or_two_thumbprints_as_event_grid_takes() -> None:
    text = MAIN_BICEP.read_text(encoding="utf-8")
    declaration = text[text.index("type deviceClient = {"):]
    declaration = declaration[:declaration.index("\n}\n")]
    assert re.search(r"@minLength\(1\)\s*@maxLength\(2\)\s*thumbprints: string\[\]\?", declaration), declaration


def test_the_instance_ceiling_takes_what_flex_consumption_allows() -> None:
    assert "@minValue(1)" in decorators("maximumInstanceCount")
    assert "@maxValue(1000)" in decorators("maximumInstanceCount")
    assert "per function scale group" in decorators("maximumInstanceCount")


@pytest.mark.parametrize("endpoint, host", [
    ("https://evhns-x.servicebus.windows.net:443/", "evhns-x.servicebus.windows.net"),
    ("https://evhns-x.servicebus.usgovcloudapi.net:443/", "evhns-x.servicebus.usgovcloudapi.net"),
    ("https://evhns-x.servicebus.chinacloudapi.cn/", "evhns-x.servicebus.chinacloudapi.cn"),
])
def test_the_event_hubs_host_comes_from_the_namespace_in_any_cloud(endpoint: str, host: str) -> None:
    eventhubs = template(INFRA / "app" / "eventhubs.bicep")
    namespace = {"name": "evhns-x", "properties": {"serviceBusEndpoint": endpoint}}
    assert evaluate(eventhubs, "fullyQualifiedNamespace", {}, {"namespace": namespace}) == host
    for path in INFRA.rglob("*.bicep"):
        code = "\n".join(line.split("//")[0] for line in path.read_text(encoding="utf-8").splitlines())
        assert "servicebus.windows.net" not in code, f"{path.name} hard-codes the public cloud's suffix"


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
