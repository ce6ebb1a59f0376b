"""The simulator's Azure mode, locally with real parts: the "deployed API" is the local API
server with a function key, Event Hubs is the AMQP 1.0 stand-in that the real
azure-eventhub producer talks to over the wire (standins/eventhubs_amqp/), the data storage
is Azurite read through its blob endpoint; the target comes from a temporary azd
environment. Azure Resource Manager's listKeys and Entra tokens are doubles that check
each request."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from azure.core.credentials import AccessToken

from standins import event_factory as ev
from standins.eventhubs_amqp.service import EventHubsStandIn
from standins.invoke import user_function
from standins.services import Azurite, free_port
from tests.support.azd import azd_env
from tools.serve import run_server
from tools.simulate.__main__ import parser, run_azure
from tools.simulate.operator import Options
from tools.simulate.target import LIST_KEYS_API_VERSION, TargetError, parse_dotenv, resolve

ROOT = Path(__file__).resolve().parent.parent
KEY = "function-key-" + "k" * 20
REGISTERED = 3  # of the fleet's devices, whose clients the namespace has (the registry knows them)


async def register(device_ids: list[str]) -> None:
    """What Event Grid reports when the devices' clients are registered."""
    now = datetime.now(UTC)
    for device in device_ids:
        await user_function("client_lifecycle")(
            ev.created_or_updated(device, now, created_on=now, attributes={"role": "edge-device"}))


class Deployment:
    """The API server and the Event Hubs stand-in with the Functions host's delivery."""

    def __init__(self, server_url: str, hubs: EventHubsStandIn) -> None:
        self.url, self.hubs = server_url, hubs


async def deployment() -> Any:
    import contextlib

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[Deployment]:
        hubs = EventHubsStandIn(first_sequence=time.time_ns() // 1000)  # after any earlier stand-in's
        async with hubs.serving(), run_server(port=0, key=KEY, timer_period=1.0, queue_period=0.5) as server:
            stop = asyncio.Event()
            pump = asyncio.create_task(hubs.pump(stop))
            try:
                yield Deployment(server.url, hubs)
            finally:
                stop.set()
                await pump

    return running()


async def simulator(*args: str, seconds: float = 240) -> tuple[int, str, str]:
    """``python -m tools.simulate`` in a subprocess, while this loop serves the deployment."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "tools.simulate", *args, cwd=ROOT,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), seconds)
    return int(process.returncode or 0), out.decode(), err.decode()


@pytest.fixture(scope="module")
def eventhubs_run(app_env: Azurite, run: Any, tmp_path_factory: pytest.TempPathFactory,
                  ) -> tuple[int, str, str, dict[str, Any], EventHubsStandIn, str]:
    """One run of ``--azure --via eventhubs`` with every name from the azd environment but
    the key, the Event Hubs connection string and the storage (Azurite's key)."""
    project = tmp_path_factory.mktemp("azd")
    prefix = f"az{secrets.token_hex(3)}"
    report = project / "report.json"

    async def scenario() -> tuple[int, str, str, EventHubsStandIn]:
        async with await deployment() as deployed:
            azd_env(project, {"AZURE_FUNCTION_URI": deployed.url, "AZURE_STORAGE_BLOB_ENDPOINT": "http://unused",
                              "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "evhns-x.servicebus.windows.net",
                              "TELEMETRY_HUB_NAME": "telemetry", "INFERENCE_HUB_NAME": "inference",
                              "EVENTGRID_NAMESPACE_NAME": "evgns-sim", "OFFLINE_COMMAND_POLICY": "queue"})
            await register([f"{prefix}-{i:03d}" for i in range(REGISTERED)])
            code, out, err = await simulator(
                "--azure", "--via", "eventhubs", "--project-dir", str(project), "--device-prefix", prefix,
                "--function-key", KEY, "--eventhub-connection-string", deployed.hubs.connection_string,
                "--storage", app_env.connection_string, "--devices", "6", "--duration", "3", "--rate", "4",
                "--commands", "6", "--bad", "--spoofed", "--settle", "60", "--json", str(report))
            return code, out, err, deployed.hubs

    code, out, err, hubs = run(scenario())
    return code, out, err, orjson.loads(report.read_bytes()) if report.exists() else {}, hubs, prefix


def test_every_message_sent_to_event_hubs_is_stored_once_and_every_check_passes(
        eventhubs_run: tuple[int, str, str, dict[str, Any], EventHubsStandIn, str]) -> None:
    code, out, err, report, hubs, _ = eventhubs_run
    assert code == 0, out[-3000:] + err[-3000:]
    assert [c["name"] for c in report["checks"]] == [
        "every message accounted for exactly once",
        "the registry's connection states equal the simulator's (no MQTT: none connected)",
        "every command answered as the device's standing implies (unknown: 404; known and offline: pending "
        "under OFFLINE_COMMAND_POLICY=queue)"]
    assert report["ok"] and all(c["ok"] for c in report["checks"])
    published = sum(report["published"].values())
    assert report["published"]["bad"] > 0 and report["published"]["spoofed"] > 0
    # Every event the producer sent passed the service's contract checks and was taken.
    assert hubs.rejected == [] and hubs.accepted() == published
    assert {a.rsplit("/", 1)[1] for a in hubs.tokens} == {"telemetry", "inference"}
    streams = report["streams"]
    assert sum(s["sent"] for s in streams.values()) == published
    for figures in streams.values():  # one place each: an archive line or a dead letter
        assert figures["archived"] + figures["deadLettered"] == figures["sent"]
    assert streams["telemetry"]["deadLetterReasons"][
        "deviceId '…' differs from the device '…' that published on the topic"] == report["published"]["spoofed"]
    assert report["brokerDuplicates"] == 0
    assert report["latencyMs"]["p50"] is not None and report["throughputPerSecond"] > 0


def test_commands_to_devices_without_mqtt_are_pending_when_registered_and_404_when_unknown(
        eventhubs_run: tuple[int, str, str, dict[str, Any], EventHubsStandIn, str]) -> None:
    _, out, _, report, _, _ = eventhubs_run
    # Six commands to six devices in turn: the three registered are offline (queued), the rest unknown.
    assert report["commands"] == {"pending": REGISTERED, "404": 6 - REGISTERED}
    assert "6 commands sent over HTTP to devices that are not connected." in out


def test_under_the_reject_policy_commands_to_registered_offline_devices_are_409_and_a_wrong_expectation_fails(
        app_env: Azurite, run: Any, tmp_path: Path) -> None:
    """The check follows OFFLINE_COMMAND_POLICY of the azd environment; when the app was
    deployed with another one, the check fails and says what it expected."""
    from tests.support.harness import changed_settings

    prefix = f"az{secrets.token_hex(3)}"

    async def scenario(policy: str) -> tuple[int, str, str]:
        async with await deployment() as deployed:
            azd_env(tmp_path, {"AZURE_FUNCTION_URI": deployed.url, "OFFLINE_COMMAND_POLICY": policy})
            await register([f"{prefix}-000"])
            return await simulator("--azure", "--project-dir", str(tmp_path), "--device-prefix", prefix,
                                   "--function-key", KEY, "--storage", app_env.connection_string,
                                   "--eventhub-connection-string", deployed.hubs.connection_string,
                                   "--devices", "2", "--duration", "1", "--commands", "2", seconds=120)

    with changed_settings(run, {"OFFLINE_COMMAND_POLICY": "reject"}):  # the app as deployed
        agreed = run(scenario("reject"))
        disagreed = run(scenario("queue"))
    assert agreed[0] == 0, agreed[1][-2000:] + agreed[2][-2000:]
    assert "Commands by status: 404 1, 409 1" in agreed[1]
    assert disagreed[0] == 1
    assert (f"FAIL every command answered as the device's standing implies (unknown: 404; known and offline: "
            f"pending under OFFLINE_COMMAND_POLICY=queue): {prefix}-000: 409, expected pending") in disagreed[1]


def test_a_function_key_read_from_azure_resource_manager_with_an_entra_token(
        app_env: Azurite, run: Any, tmp_path: Path) -> None:
    """listKeys is a POST on the function app's host with api-version and a bearer token
    for ARM's .default scope; the key it returns is the one the API takes."""
    seen: list[dict[str, Any]] = []
    scopes: list[tuple[str, ...]] = []

    class Credential:  # an Entra token double: one scope, a token it made
        async def get_token(self, *wanted: str, **kwargs: Any) -> AccessToken:
            scopes.append(wanted)
            return AccessToken("entra-token-123", int(datetime.now(UTC).timestamp()) + 3600)

    async def list_keys(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "path": request.path, "query": dict(request.query),
                     "authorization": request.headers.get("Authorization")})
        if request.headers.get("Authorization") != "Bearer entra-token-123":
            return web.json_response({"error": {"code": "AuthenticationFailed", "message": "no token"}}, status=401)
        return web.json_response({"masterKey": "master", "functionKeys": {"default": KEY}, "systemKeys": {}})

    port = free_port()

    async def scenario() -> Any:
        arm = web.Application()
        arm.router.add_route("*", "/{tail:.*}", list_keys)
        runner = web.AppRunner(arm)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with await deployment() as deployed:
                azd_env(tmp_path, {"AZURE_FUNCTION_URI": deployed.url, "AZURE_SUBSCRIPTION_ID": "sub-1",
                                   "AZURE_RESOURCE_GROUP": "rg-dev", "AZURE_FUNCTION_APP_NAME": "func-api-x"})
                args = parser().parse_args([
                    "--azure", "--project-dir", str(tmp_path), "--arm-url", f"http://127.0.0.1:{port}",
                    "--eventhub-connection-string", deployed.hubs.connection_string,
                    "--storage", app_env.connection_string, "--devices", "2", "--duration", "1", "--settle", "30"])
                return await run_azure(Options(devices=2, duration=1.0, commands=2), args, credential=Credential())
        finally:
            await runner.cleanup()

    report = run(scenario())
    assert report.ok, report.text()
    assert seen == [{"method": "POST", "query": {"api-version": LIST_KEYS_API_VERSION},
                     "path": "/subscriptions/sub-1/resourceGroups/rg-dev/providers/Microsoft.Web/sites/func-api-x"
                             "/host/default/listkeys", "authorization": "Bearer entra-token-123"}]
    assert scopes == [(f"http://127.0.0.1:{port}/.default",)]


def test_a_wrong_function_key_stops_the_run_with_a_clear_message(app_env: Azurite, run: Any, tmp_path: Path) -> None:
    async def scenario() -> tuple[int, str, str]:
        async with await deployment() as deployed:
            return await simulator("--azure", "--function-url", deployed.url, "--function-key", "wrong",
                                   "--storage", app_env.connection_string, "--project-dir", str(tmp_path),
                                   "--eventhub-connection-string", deployed.hubs.connection_string, seconds=60)

    code, _, err = run(scenario())
    assert code == 2 and "refused the function key (401)" in err and "Traceback" not in err


def test_an_unreachable_event_hubs_namespace_stops_the_run_with_a_clear_message(
        app_env: Azurite, run: Any, tmp_path: Path) -> None:
    nowhere = EventHubsStandIn(port=free_port()).connection_string  # nothing listens there

    async def scenario() -> tuple[int, str, str]:
        async with await deployment() as deployed:
            return await simulator("--azure", "--function-url", deployed.url, "--function-key", KEY,
                                   "--storage", app_env.connection_string, "--project-dir", str(tmp_path),
                                   "--eventhub-connection-string", nowhere, "--devices", "1", "--duration", "1",
                                   seconds=120)

    code, _, err = run(scenario())
    assert code == 2 and "Event Hubs of --eventhub-connection-string, hub" in err and "Traceback" not in err


def test_a_missing_azd_environment_or_name_is_named_with_its_flag(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"no azd environment 'nope': .*\.azure/nope/\.env does not exist"):
        resolve({}, project=tmp_path, env_name="nope", environ={})
    azd_env(tmp_path, {"AZURE_STORAGE_BLOB_ENDPOINT": "https://st.blob.core.windows.net/"})
    with pytest.raises(TargetError, match=r"needs AZURE_FUNCTION_URI \(or --function-url\); the azd environment "
                                          "'dev' does not have it"):
        resolve({}, project=tmp_path, env_name=None, environ={})
    with pytest.raises(TargetError, match=r"needs AZURE_STORAGE_BLOB_ENDPOINT \(or --storage-blob-endpoint\); "
                                          "and no azd environment was found"):
        resolve({"function_url": "https://f"}, project=tmp_path / "elsewhere", env_name=None, environ={})


def test_flags_win_over_the_azd_environment_which_wins_over_the_process_environment(tmp_path: Path) -> None:
    azd_env(tmp_path, {"AZURE_FUNCTION_URI": "https://func-api-x.azurewebsites.net/",
                       "AZURE_STORAGE_BLOB_ENDPOINT": "https://st.blob.core.windows.net/",
                       "TELEMETRY_HUB_NAME": "tele"}, name="prod", default=False)
    target = resolve({"telemetry_hub": "flag-hub"}, project=tmp_path, env_name=None,
                     environ={"AZURE_ENV_NAME": "prod", "AZURE_FUNCTION_URI": "https://stale",
                              "INFERENCE_HUB_NAME": "inf-from-env", "FUNCTION_KEY": "k"})
    assert (target.environment, target.function_url, target.telemetry_hub, target.inference_hub,
            target.function_key) == ("prod", "https://func-api-x.azurewebsites.net", "flag-hub", "inf-from-env", "k")
    assert target.sources["function_url"] == "azd env prod" and target.sources["telemetry_hub"] == "--telemetry-hub"
    with pytest.raises(TargetError, match=r"OFFLINE_COMMAND_POLICY .* 'later': queue or reject"):
        resolve({"offline_command_policy": "later"}, project=tmp_path, env_name="prod", environ={})


def test_the_dotenv_reader_takes_what_azd_writes() -> None:
    text = ('# azd\nAZURE_ENV_NAME="dev"\nRULES="[{\\"name\\": \\"a\\\\b\\"}]"\nexport PLAIN=bare\n'
            "SINGLE='x \"y\"'\nLINES=\"one\\ntwo\"\n\n")
    assert parse_dotenv(text) == {"AZURE_ENV_NAME": "dev", "RULES": '[{"name": "a\\b"}]', "PLAIN": "bare",
                                  "SINGLE": 'x "y"', "LINES": "one\ntwo"}


def test_local_only_faults_and_a_missing_environment_are_refused_on_the_command_line(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "tools.simulate", "--azure", "--drop"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--drop is for local mode" in done.stderr
    done = subprocess.run([sys.executable, "-m", "tools.simulate", "--azure", "--env", "nope", "--project-dir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--azure: no azd environment 'nope'" in done.stderr
    assert "Traceback" not in done.stderr
