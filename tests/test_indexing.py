"""Importing and indexing the app (what the worker does first, test_worker.py runs the
worker itself): no setting, no network, light imports, and
every setting the code reads documented in local.settings.sample.json and in the
settings table of docs/operations.md."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.support.indexing import CONTRACT_FUNCTIONS

ROOT = Path(__file__).resolve().parent.parent

BUILT = set(CONTRACT_FUNCTIONS)

# Run in a fresh interpreter with an empty environment and no network.
INDEX_SCRIPT = r"""
import json, socket, sys
def refuse(*args, **kwargs):
    raise AssertionError("importing function_app touched the network")
socket.socket.connect = refuse
socket.create_connection = refuse
import function_app
heavy = sorted(m for m in sys.modules if m.startswith(("azure.data", "azure.storage", "azure.identity",
               "azure.eventhub", "pydantic", "aiohttp", "paho")))
functions = {}
for f in function_app.app.get_functions():
    functions[f.get_function_name()] = json.loads(f.get_function_json())["bindings"]
print(json.dumps({"heavy": heavy, "functions": functions}))
"""


def index_app() -> dict[str, object]:
    result = subprocess.run([sys.executable, "-c", INDEX_SCRIPT], cwd=ROOT, env={}, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_the_app_indexes_with_an_empty_environment_and_no_network() -> None:
    indexed = index_app()
    functions = indexed["functions"]
    assert isinstance(functions, dict)
    assert set(functions) >= BUILT
    for name, bindings in functions.items():
        assert name in CONTRACT_FUNCTIONS, f"{name} is not a contract function name"
        triggers = [b["type"] for b in bindings if b["type"].endswith("Trigger")]
        assert triggers == [CONTRACT_FUNCTIONS[name]], name


def test_indexing_imports_no_sdk_and_no_pydantic() -> None:
    assert index_app()["heavy"] == []


def test_health_imports_no_pydantic() -> None:
    """An anonymous probe target stays cheap on a cold worker: its answer is a plain dict."""
    script = "import sys, shared.meta.health; print(sorted(m for m in sys.modules if m.startswith('pydantic')))"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={}, capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_get_device_imports_no_pydantic() -> None:
    """The cold request the bench times (cold_request_ratio): the modules get_device
    imports, the latest state's combine included (1.41 while it pulled in the
    streams' message models)."""
    script = ("import sys, shared.lifecycle.registry, shared.platform.http, shared.platform.storage, "
              "shared.streams.state; print(sorted(m for m in sys.modules if m.startswith('pydantic')))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={}, capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_http_routes_and_auth_levels_follow_the_contract() -> None:
    functions = index_app()["functions"]
    assert isinstance(functions, dict)
    routes = {name: next(b for b in bindings if b["type"] == "httpTrigger")
              for name, bindings in functions.items()
              if any(b["type"] == "httpTrigger" for b in bindings)}
    expected = {"list_devices": ("devices", ["GET"]), "get_device": ("devices/{deviceId}", ["GET"]),
                "list_alerts": ("alerts", ["GET"]), "health": ("health", ["GET"]),
                "openapi": ("openapi.json", ["GET"]), "get_model_stats": ("models/{modelName}/stats", ["GET"]),
                "send_command": ("devices/{deviceId}/commands", ["POST"]),
                "list_commands": ("devices/{deviceId}/commands", ["GET"]),
                "get_command": ("devices/{deviceId}/commands/{commandId}", ["GET"]),
                "cancel_command": ("devices/{deviceId}/commands/{commandId}/cancel", ["POST"]),
                "send_fleet_command": ("commands", ["POST"]), "get_fleet_command": ("commands/{jobId}", ["GET"]),
                "send_broadcast": ("broadcasts", ["POST"]), "list_broadcasts": ("broadcasts", ["GET"]),
                "list_dead_letters": ("deadletters", ["GET"]),
                "get_dead_letter": ("deadletters/{stream}/{deadLetterId}", ["GET"])}
    for name, (route, methods) in expected.items():
        assert (routes[name]["route"], [m.upper() for m in routes[name]["methods"]]) == (route, methods)
        anonymous = name in ("health", "openapi")
        assert routes[name]["authLevel"].upper() == ("ANONYMOUS" if anonymous else "FUNCTION"), name


def settings_read_by_code() -> set[str]:
    """Names the code reads: ``setting("NAME", ...)`` declarations and any os.environ/getenv call."""
    names: set[str] = set()
    for path in [ROOT / "function_app.py", *ROOT.glob("blueprints/*.py"), *ROOT.glob("shared/**/*.py")]:
        text = path.read_text()
        names |= set(re.findall(r'\bsetting\(\s*"(\w+)"', text))
        names |= set(re.findall(r'os\.(?:environ(?:\.get)?|getenv)[\[(]"(\w+)"', text))
    return names


def binding_settings() -> set[str]:
    found: set[str] = set()
    functions = index_app()["functions"]
    assert isinstance(functions, dict)
    for bindings in functions.values():
        for binding in bindings:
            found |= set(re.findall(r"%(\w+)%", json.dumps(binding)))
            if binding.get("connection"):
                found.add(binding["connection"])
    return found


def settings_rows() -> set[str]:
    """The names the rows of docs/operations.md's settings table are for."""
    page = (ROOT / "docs" / "operations.md").read_text()
    assert "\n## Settings\n" in page, "docs/operations.md has a Settings section"
    section = page.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = {name for line in section.splitlines() if line.startswith("| `")
            for name in re.findall(r"`([^`]+)`", line.split(" | ", 1)[0])}
    return rows


def test_every_setting_the_code_reads_is_in_the_sample_and_the_settings_page() -> None:
    sample = set(json.loads((ROOT / "local.settings.sample.json").read_text())["Values"])
    rows = settings_rows()
    read = settings_read_by_code()
    assert {"DataStorage", "DataStorage__tableServiceUri", "COMMAND_TRANSPORT", "FLAPPING_DISCONNECTS"} <= read, (
        "the scan finds the declarations")
    for name in read | binding_settings():
        base = name.split("__")[0]
        assert base in sample, f"{name} is not in local.settings.sample.json"
        assert base in rows, f"{base} has no row in the settings table of docs/operations.md"


def test_the_scan_finds_every_setting_that_health_validates() -> None:
    from shared.meta import health  # noqa: F401 - registers every capability's settings class
    from shared.platform.settings import registered, setting_names

    declared = {name for cls in registered() for name in setting_names(cls)}
    assert declared == settings_read_by_code()


def test_the_sample_names_no_setting_the_code_does_not_read() -> None:
    sample = set(json.loads((ROOT / "local.settings.sample.json").read_text())["Values"])
    host_settings = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
    # The Event Hubs connection is read by the host's trigger bindings (later issues).
    unread = sample - settings_read_by_code() - host_settings - binding_settings() - {"EventHubConnection"}
    assert unread == set()


def test_the_stream_functions_read_a_partitions_batch_as_bytes_from_the_contract_hubs() -> None:
    functions = index_app()["functions"]
    assert isinstance(functions, dict)
    for name, hub in (("telemetry_ingest", "%TELEMETRY_HUB_NAME%"), ("inference_ingest", "%INFERENCE_HUB_NAME%")):
        [trigger] = [b for b in functions[name] if b["type"] == "eventHubTrigger"]
        assert (trigger["eventHubName"], trigger["connection"], trigger["consumerGroup"]) == (
            hub, "EventHubConnection", "%EVENTHUB_CONSUMER_GROUP%")
        assert (trigger["cardinality"].lower(), trigger["dataType"].lower()) == ("many", "binary")
