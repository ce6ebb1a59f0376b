"""monitoring.bicep: Application Insights and its workspace take Entra ID only."""

from __future__ import annotations

from tests.support.infra import app_settings, literal, resources_of


def test_monitoring_has_local_auth_off() -> None:
    (insights,) = resources_of("Microsoft.Insights/components")
    assert literal(insights.body, "properties.DisableLocalAuth") is True
    (workspace,) = resources_of("Microsoft.OperationalInsights/workspaces")
    assert literal(workspace.body, "properties.features.disableLocalAuth") is True
    settings = app_settings()
    auth = settings.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
    assert auth is not None
    assert "Authorization=AAD" in auth.text
