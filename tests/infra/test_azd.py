"""What azd reads besides the templates: azure.yaml, the hooks, main.parameters.json,
main.bicep's names and outputs, and .funcignore."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.infra import INFRA, MAIN_BICEP, ROOT, bicep, sample_settings


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
