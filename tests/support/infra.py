"""What the offline checks of the infrastructure share: the parsed templates, paths into
their values, the built-in role table and the function app's settings.

Type checks need the Azure resource type definitions (Azure/bicep-types-az
``generated/``) in the folder named by ``BICEP_TYPES_DIR``; without it they are
skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from .bicep_parse import BicepFile, Resource, Value, parse
from .bicep_types import TypeIndex

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
FUNCTION_BICEP = INFRA / "app" / "function.bicep"
MAIN_BICEP = INFRA / "main.bicep"

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

HUB_SETTING_PARAMS = {
    "TELEMETRY_HUB_NAME": "telemetryHubName",
    "INFERENCE_HUB_NAME": "inferenceHubName",
    "COMMAND_RESPONSES_HUB_NAME": "commandResponsesHubName",
    "ALERTS_HUB_NAME": "alertsHubName",
}


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
