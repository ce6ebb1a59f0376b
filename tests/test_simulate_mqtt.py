"""The simulator's Azure mode ``--via mqtt``, locally with real parts: the real command
line in a subprocess, its names from a temporary azd environment, against

- the namespace's MQTT broker: Mosquitto with a TLS listener that requires a client
  certificate and trusts exactly the certificates whose thumbprints have been
  registered (Event Grid's ThumbprintMatch). The simulator makes its certificates
  during the run; when Azure Resource Manager (the contract-checking stand-in of
  tests/infra) stores a client, the certificate with the registered thumbprint is
  added to the broker's trust folder, which OpenSSL reads at each handshake. The
  simulator trusts the broker's test CA through ``SSL_CERT_FILE`` (with Event Grid,
  the system's store);
- Event Grid's routing and life cycle events: :class:`tools.simulate.stand_in.StandIn`
  (its subscriber an mqtts client with its own trusted certificate) routes the
  devices' messages and answers to the ingest and response functions; a registration
  raises the client's created event with its attributes, and the connects and
  disconnects come from the broker's own log (:mod:`tools.simulate.broker_sessions`);
- the deployed API: the local API server with a function key in this process, its
  data in Azurite (given to the simulator with ``--storage``), its commands published
  through a plain loopback listener of the same broker (the app's MQTT transport
  presents no client certificate; in Azure it uses Event Grid's HTTP Publish);
- Entra ID: an App Service managed identity endpoint double that
  ``DefaultAzureCredential`` in the subprocess takes its ARM token from.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import orjson
import pytest
from aiohttp import web
from cryptography import x509

from standins.edge import TlsClient
from standins.services import Azurite, Mosquitto, MosquittoTls, run_mosquitto, trust
from tests.support.arm_stand_in import ArmStandIn, client_contract, serve
from tests.support.azd import azd_env
from tests.support.certs import bicep_types
from tests.support.harness import changed_settings
from tests.support.tls import broker_certificate
from tools.serve import run_server
from tools.simulate.broker_sessions import BrokerSessions, parse
from tools.simulate.device_certs import ensure_certificates, thumbprint
from tools.simulate.fleet import DEFAULT_SHARES, behaviours
from tools.simulate.invariants import IMPLIED
from tools.simulate.operator import GROUPS, Api
from tools.simulate.stand_in import StandIn

ROOT = Path(__file__).resolve().parent.parent
KEY = "function-key-" + "m" * 20
TOKEN = "eyJ0eXAiOiJKV1Qi.managed-identity.arm-token"
IDENTITY_HEADER = "identity-header-" + "h" * 16
WHERE = {"AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000002", "AZURE_RESOURCE_GROUP": "rg-sim",
         "EVENTGRID_NAMESPACE_NAME": "evgns-sim", "OFFLINE_COMMAND_POLICY": "queue"}
AZURE_SIDE = "event-grid-routing"  # the CN of the certificate routing and the session reader connect with


@dataclass
class Namespace:
    """The local Event Grid namespace: broker, trust, routing, life cycle events."""

    broker: Mosquitto
    certificates: Path  # the simulator's --certificates
    stand_in: StandIn
    sessions: BrokerSessions
    loop: asyncio.AbstractEventLoop
    registered: set[str] = field(default_factory=set)
    replace_after_registration: set[str] = field(default_factory=set)
    replaced: list[str] = field(default_factory=list)
    bodies: dict[str, Any] = field(default_factory=dict)  # each client as ARM stored it
    trusted: dict[str, list[str]] = field(default_factory=dict)  # the certificates its thumbprints matched

    def stored(self, path: str, body: Any) -> None:
        """ARM stored a client (on its server's thread, before the operation answers
        Succeeded): the broker trusts the certificate of the registered thumbprint,
        and Event Grid reports the client created with its attributes."""
        name = unquote(path.rsplit("/", 1)[1])
        properties = body["properties"]
        thumbprints = properties["clientCertificateAuthentication"]["allowedThumbprints"]
        self.bodies[name] = body
        for certfile in self.certificates.glob("*.pem"):
            if thumbprint(x509.load_pem_x509_certificate(certfile.read_bytes())) in thumbprints:
                trust(self.broker, certfile)
                self.trusted.setdefault(name, []).append(certfile.stem)
        if name in self.replace_after_registration:  # someone makes the device a new certificate
            fresh = ensure_certificates([name], self.certificates.parent / "replacements")[0]
            shutil.copyfile(fresh.certfile, self.certificates / f"{name}.pem")
            shutil.copyfile(fresh.keyfile, self.certificates / f"{name}.key")
            self.replaced.append(name)
        self.loop.call_soon_threadsafe(self._created, name, dict(properties["attributes"]))

    def _created(self, name: str, attributes: dict[str, Any]) -> None:
        self.registered.add(name)
        self.stand_in.created(name, attributes)

    async def run(self, stop: asyncio.Event, *, drain: float = 30) -> None:
        """The broker's sessions of registered clients become life cycle events, which
        go out with the routed messages at each flush; once ``stop`` is set, until
        every session seen has ended (``drain`` seconds at most)."""
        deadline = None
        while deadline is None or (self.sessions.open and time.monotonic() < deadline):
            await asyncio.sleep(0.5)
            self.sessions.forward(self.stand_in, self.registered)
            await self.stand_in.flush()
            if deadline is None and stop.is_set():
                deadline = time.monotonic() + drain


@contextlib.contextmanager
def broker(folder: Path) -> Iterator[tuple[Mosquitto, Path, TlsClient]]:
    """The TLS broker trusting only the Azure side's certificate so far, and that side's TLS."""
    folder.mkdir(mode=0o755)
    ca, certfile, keyfile = broker_certificate(folder)
    azure = ensure_certificates([AZURE_SIDE], folder / "azure")[0]
    with run_mosquitto(tls=MosquittoTls(certfile, keyfile), internal=True, log_topic=True) as service:
        trust(service, azure.certfile)
        yield service, ca, TlsClient(azure.certfile, azure.keyfile, ca)


@contextlib.asynccontextmanager
async def managed_identity(requests: list[dict[str, Any]]) -> AsyncIterator[dict[str, str]]:
    """App Service's managed identity endpoint (api-version 2019-08-01: GET with the
    ``resource`` and the ``X-IDENTITY-HEADER`` secret); the environment that points
    ``DefaultAzureCredential`` at it."""

    async def token(request: web.Request) -> web.Response:
        requests.append({"method": request.method, "query": dict(request.query),
                         "secret": request.headers.get("X-IDENTITY-HEADER") == IDENTITY_HEADER})
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return web.json_response({"error": "invalid_request"}, status=400)
        return web.json_response({"access_token": TOKEN, "expires_on": str(int(time.time()) + 3600),
                                  "resource": request.query.get("resource"), "token_type": "Bearer"})

    app = web.Application()
    app.router.add_get("/msi/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield {"IDENTITY_ENDPOINT": f"http://127.0.0.1:{port}/msi/token", "IDENTITY_HEADER": IDENTITY_HEADER}
    finally:
        await runner.cleanup()


async def simulator(*args: str, env: dict[str, str], seconds: float = 300) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "tools.simulate", *args, cwd=ROOT,
                                                   env=os.environ | env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), seconds)
    return int(process.returncode or 0), out.decode(), err.decode()


@dataclass
class Run:
    code: int
    out: str
    err: str
    report: dict[str, Any]
    prefix: str
    namespace: Namespace
    arm: ArmStandIn
    tokens: list[dict[str, Any]]
    registry: dict[str, dict[str, Any]]  # the app's devices after the run, by id


def simulate_via_mqtt(app_env: Azurite, run: Any, folder: Path, *extra: str, devices: int = 6,
                      replace: tuple[int, ...] = ()) -> Run:
    """One ``--azure --via mqtt`` run against the local namespace, ARM and API."""
    from shared.commands.transports import reset_transport

    prefix = f"mq{secrets.token_hex(3)}"
    report = folder / "report.json"
    tokens: list[dict[str, Any]] = []
    with broker(folder / "pki") as (service, ca, azure_tls), changed_settings(
            run, {"COMMAND_TRANSPORT": "mqtt", "MQTT_BROKER_URL": service.internal_url}):
        run(reset_transport())

        async def scenario() -> tuple[int, str, str, Namespace, ArmStandIn, dict[str, Any]]:
            stand_in = StandIn(service.url, rng=random.Random(7), tls=azure_tls,
                               first_sequence=time.time_ns() // 1000)  # after any earlier stand-in's
            sessions = BrokerSessions(service.url, client_id="event-grid-sessions", tls=azure_tls)
            namespace = Namespace(service, folder / "certs", stand_in, sessions, asyncio.get_running_loop(),
                                  replace_after_registration={f"{prefix}-{i:03d}" for i in replace})
            stop = asyncio.Event()
            arm = ArmStandIn(TOKEN, contract=client_contract(bicep_types()), on_stored=namespace.stored)
            try:
                with serve(arm):
                    async with managed_identity(tokens) as identity, run_server(
                            port=0, key=KEY, timer_period=1.0, queue_period=0.5) as server:
                        pump = asyncio.create_task(namespace.run(stop))
                        try:
                            azd_env(folder / "azd", WHERE | {
                                "AZURE_FUNCTION_URI": server.url, "AZURE_STORAGE_BLOB_ENDPOINT": "http://unused",
                                "EVENTGRID_MQTT_HOSTNAME": f"127.0.0.1:{service.port}"})
                            code, out, err = await simulator(
                                "--azure", "--via", "mqtt", "--project-dir", str(folder / "azd"),
                                "--device-prefix", prefix, "--function-key", KEY, "--arm-url", arm.base,
                                "--storage", app_env.connection_string, "--certificates", str(folder / "certs"),
                                "--devices", str(devices), "--settle", "60", "--json", str(report), *extra,
                                env=identity | {"SSL_CERT_FILE": str(ca)})
                        finally:
                            stop.set()
                            await pump
                        async with aiohttp.ClientSession(headers={"x-functions-key": KEY}) as session:
                            registry = {d["deviceId"]: d for d in await Api(session, server.url).pages("devices")
                                        if d["deviceId"].startswith(prefix)}
                return code, out, err, namespace, arm, registry
            finally:
                sessions.close()
                stand_in.close()

        try:
            code, out, err, namespace, arm, registry = run(scenario())
        finally:
            run(reset_transport())
    return Run(code, out, err, orjson.loads(report.read_bytes()) if report.exists() else {}, prefix, namespace,
               arm, tokens, registry)


@pytest.fixture(scope="module")
def mqtt_run(app_env: Azurite, run: Any, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return simulate_via_mqtt(app_env, run, tmp_path_factory.mktemp("via-mqtt"), "--duration", "3", "--rate", "4",
                             "--commands", "8", "--bad", "--spoofed")


def test_every_check_passes_and_every_message_published_over_mqtt_is_stored_once(mqtt_run: Run) -> None:
    report = mqtt_run.report
    assert mqtt_run.code == 0, mqtt_run.out[-3000:] + mqtt_run.err[-3000:]
    assert [c["name"] for c in report["checks"]] == [
        "every message accounted for exactly once", "the registry's connection states equal the simulator's",
        "every command in the status its device's behaviour implies", "the broadcast reached every device"]
    assert report["ok"] and all(c["ok"] for c in report["checks"])
    published = report["published"]
    assert published["bad"] > 0 and published["spoofed"] > 0
    streams = report["streams"]
    assert sum(s["sent"] for s in streams.values()) == sum(published.values())
    for figures in streams.values():  # one place each: an archive line or a dead letter
        assert figures["archived"] + figures["deadLettered"] == figures["sent"]
    assert streams["telemetry"]["deadLetterReasons"][
        "deviceId '…' differs from the device '…' that published on the topic"] == published["spoofed"]
    # Everything the devices published went through the broker and the routing stand-in.
    assert mqtt_run.namespace.stand_in.routed["telemetry"] == streams["telemetry"]["sent"]
    assert mqtt_run.namespace.stand_in.routed["inference"] == streams["inference"]["sent"]
    assert report["brokerDuplicates"] == 0


def test_commands_end_in_the_statuses_the_devices_behaviours_imply(mqtt_run: Run) -> None:
    """Eight commands to the six devices in turn; the behaviours as the simulator draws
    them (default shares, seed 7); a silent device's command expires."""
    assigned = behaviours(6, DEFAULT_SHARES, random.Random(7))
    assert mqtt_run.report["behaviours"] == dict(Counter(assigned))
    assert mqtt_run.report["commands"] == dict(Counter(IMPLIED[assigned[n % 6]] for n in range(8)))
    # every answer went device -> broker -> routing -> command_responses
    assert mqtt_run.namespace.stand_in.routed["command-responses"] == sum(
        n for status, n in mqtt_run.report["commands"].items() if status != "expired")


def test_devices_are_registered_over_arm_and_their_sessions_seen_by_the_broker(mqtt_run: Run) -> None:
    """Each device's client PUT with its thumbprint and attributes; the broker saw each
    connect and disconnect once, and the life cycle events reached the app."""
    ids = [f"{mqtt_run.prefix}-{i:03d}" for i in range(6)]
    assert sorted(mqtt_run.namespace.bodies) == ids
    for device, body in mqtt_run.namespace.bodies.items():
        assert body["properties"]["attributes"]["role"] == "edge-device"
        assert body["properties"]["attributes"]["type"] == "camera"
        assert mqtt_run.namespace.trusted[device] == [device], "the thumbprint registered is the device's own"
    assert mqtt_run.namespace.registered == set(ids)
    # created, connected and disconnected per device: the disconnects came after the run's checks
    assert mqtt_run.namespace.stand_in.lifecycle_events == 3 * len(ids)
    assert sorted(mqtt_run.registry) == ids
    for index, device in enumerate(ids):
        seen = mqtt_run.registry[device]
        assert (seen["state"], seen["connected"], seen["disconnectionReason"]) == (
            "Enabled", False, "ClientInitiatedDisconnect"), seen
        assert seen["attributes"] == {"role": "edge-device", "type": "camera", "group": GROUPS[index % len(GROUPS)]}
    # the run's clients deleted at the end, and their keys from this machine
    assert mqtt_run.arm.resources == {}
    deleted = {unquote(r.split("?")[0].rsplit("/", 1)[1]) for r in mqtt_run.arm.requests if r.startswith("DELETE ")}
    assert deleted == set(ids)
    assert not [p for p in mqtt_run.namespace.certificates.iterdir() if p.stem in ids]
    assert mqtt_run.tokens and all(t == {"method": "GET", "secret": True, "query": {
        "api-version": "2019-08-01", "resource": "https://management.azure.com"}} for t in mqtt_run.tokens)


def test_a_device_whose_certificate_was_replaced_after_registration_cannot_connect(
        app_env: Azurite, run: Any, tmp_path: Path) -> None:
    """The broker trusts the registered thumbprint, not the device's new certificate:
    the run stops with the broker's refusal and exit 2, no traceback."""
    done = simulate_via_mqtt(app_env, run, tmp_path, "--duration", "1", devices=2, replace=(1,))
    device = f"{done.prefix}-001"
    assert done.namespace.replaced == [device]
    assert done.code == 2, done.out[-2000:] + done.err[-2000:]
    assert f"{device}: 127.0.0.1:{done.namespace.broker.port} refused the connection" in done.err
    assert f"the broker did not accept the client certificate {done.namespace.certificates / device}.pem" in done.err
    assert "Traceback" not in done.err
    assert done.arm.resources == {}, "the clients registered before the failure are deleted all the same"


def test_keep_devices_leaves_the_clients_registered_and_their_certificates_here(
        app_env: Azurite, run: Any, tmp_path: Path) -> None:
    done = simulate_via_mqtt(app_env, run, tmp_path, "--duration", "1", "--keep-devices", devices=1)
    assert done.code == 0, done.out[-2000:] + done.err[-2000:]
    device = f"{done.prefix}-000"
    assert [unquote(path.rsplit("/", 1)[1]) for path in done.arm.resources] == [device]
    assert not [r for r in done.arm.requests if r.startswith("DELETE ")]
    assert (done.namespace.certificates / f"{device}.pem").is_file()
    assert (done.namespace.certificates / f"{device}.key").is_file()


def test_the_brokers_log_lines_become_sessions() -> None:
    """Mosquitto 2.0's notices, as it publishes them on $SYS/broker/log/N."""
    lines = {
        "1796405228: New client connected from 127.0.0.1:51643 as sim-000 (p5, c0, k60, u'sim-000').":
            ("sim-000", True, ""),
        "1796405228: Client sim-000 disconnected.": ("sim-000", False, "ClientInitiatedDisconnect"),
        "1796405228: Client sim-001 closed its connection.": ("sim-001", False, "ConnectionLost"),
        "1796405228: Client sim-001 has exceeded timeout, disconnecting.": ("sim-001", False, "ConnectionLost"),
        "1796405228: Client sim-002 already connected, closing old connection.": ("sim-002", False,
                                                                                  "SessionTakenOver"),
        "1796405228: Client sim-003 disconnected due to protocol error.": ("sim-003", False, "ClientError"),
    }
    for line, (client, started, reason) in lines.items():
        session = parse(line)
        assert session is not None and (session.client_id, session.started, session.reason) == (
            client, started, reason), line
    for line in ("1796405228: New connection from 127.0.0.1:39345 on port 46175.",
                 "1796405228: Client <unknown> disconnected: Protocol error.",
                 "1796405228: OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed"):
        assert parse(line) is None, line


def test_an_mqtt_hostname_that_is_no_host_and_port_stops_the_run_before_anything_is_registered(
        app_env: Azurite, run: Any, tmp_path: Path) -> None:
    async def scenario() -> tuple[int, str, str]:
        async with run_server(port=0, key=KEY) as server:
            azd_env(tmp_path, WHERE | {"AZURE_FUNCTION_URI": server.url, "EVENTGRID_MQTT_HOSTNAME": "127.0.0.1:mqtt"})
            return await simulator("--azure", "--via", "mqtt", "--project-dir", str(tmp_path), "--function-key", KEY,
                                   "--storage", app_env.connection_string, "--arm-url", "http://127.0.0.1:9",
                                   "--certificates", str(tmp_path / "certs"), env={}, seconds=120)

    code, _, err = run(scenario())
    assert code == 2, err
    assert "EVENTGRID_MQTT_HOSTNAME (--mqtt-hostname) '127.0.0.1:mqtt' is no HOST[:PORT]" in err
    assert "Traceback" not in err and not (tmp_path / "certs").exists()
