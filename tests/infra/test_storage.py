"""storage.bicep: the app's containers and tables, no shared keys, no public access."""

from __future__ import annotations

from tests.support.infra import INFRA, MAIN_BICEP, bicep, literal, resources_of, string_items

try:
    from shared.platform.storage_names import BLOB_CONTAINERS as _APP_CONTAINERS
    from shared.platform.storage_names import TABLES as _APP_TABLES

    APP_BLOB_CONTAINERS: tuple[str, ...] = tuple(_APP_CONTAINERS)
    APP_TABLES: tuple[str, ...] = tuple(_APP_TABLES)
except ImportError:  # the app module is not written yet
    APP_BLOB_CONTAINERS = ("telemetry", "inference", "deadletter")
    APP_TABLES = ("devices", "alerts", "commands", "fleetjobs")


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


def test_storage_is_secure_by_default() -> None:
    (account,) = resources_of("Microsoft.Storage/storageAccounts")
    assert literal(account.body, "properties.allowSharedKeyAccess") is False
    assert literal(account.body, "properties.allowBlobPublicAccess") is False
    assert literal(account.body, "properties.minimumTlsVersion") == "TLS1_2"
    assert literal(account.body, "properties.supportsHttpsTrafficOnly") is True
    for container in resources_of("Microsoft.Storage/storageAccounts/blobServices/containers"):
        assert literal(container.body, "properties.publicAccess") == "None"
