"""Role assignments in every template (rbac.bicep above all): known built-in roles, none
broader than needed, each scoped to a resource."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bicep_check import check_role_ids, guid_literals
from tests.support.infra import ALLOWED_ROLES, BICEP_FILES, BUILTIN_ROLES, INFRA, prop, resources_of

BROAD_ROLES = {
    "Owner",
    "Contributor",
    "User Access Administrator",
    "Storage Account Contributor",
    "Azure Event Hubs Data Owner",
    "EventGrid Contributor",
}


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
