"""`azd up`'s hooks as ``sh`` runs them, in a scratch folder, checked offline:
``postprovision.sh`` run again and again (and ``postdown.sh``); ``postdeploy.sh`` against
a local stand-in for Azure Resource Manager that answers as the documented
asynchronous-operation contract says ("Track asynchronous Azure operations": ``201``
with ``Azure-AsyncOperation``, then ``status`` ``InProgress``, ``Succeeded``, ``Failed``
or ``Canceled``), with a stand-in for ``azd auth token`` (its output as azd's
``contracts.AuthTokenResult`` defines it) and an ``az`` that fails the test if it is
called. The PowerShell twins cannot run here (no ``pwsh``); their text is checked for
the same steps. The life cycle subscription postdeploy creates is checked against its
resource type.
"""

from __future__ import annotations

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

from tests.support.arm_stand_in import ArmStandIn, serve
from tests.support.azd import HOSTILE, b64
from tests.support.bicep_check import check_source
from tests.support.bicep_eval import evaluate
from tests.support.infra import INFRA, MAIN_BICEP, ROOT, type_index
from tests.support.infra import bicep as template

HOOKS = INFRA / "hooks"


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


# --------------------------------------------------------------------------- local.settings.json, every time


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


# --------------------------------------------------------------------------- the life cycle subscription, without az


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


# --------------------------------------------------------------------------- re-provision keeps routing


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
