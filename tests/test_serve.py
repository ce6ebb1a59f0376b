"""The local API server (``python -m tools.serve``): the app's HTTP functions served as
the Functions host serves them, driven by a real HTTP client over every path of the
OpenAPI document the server itself serves, each answer checked against that document."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import azure.functions as func
import orjson
import pytest
import yarl
from multidict import CIMultiDictProxy

from standins import event_factory as ev
from standins.services import ROOT, Azurite, Mosquitto, free_port
from tests.support.harness import command_line, deliver, read_until
from tests.support.openapi_responses import ResponseValidator
from tools.serve import LocalServer, aiohttp_path, http_functions, route_prefix, run_server

T0 = datetime.now(UTC) - timedelta(hours=1)
KEY = "test-key-" + uuid.uuid4().hex


def encoded(device_id: str) -> str:
    return quote(device_id, safe="")


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    operation: str | None  # the document's operationId, None when it documents no such call

    def json(self) -> Any:
        return orjson.loads(self.body)


class Api:
    """The server over HTTP. Every answer to a call the document describes (matched by
    path template and method) is checked against it with the tests' response checker."""

    def __init__(self, session: aiohttp.ClientSession, server: LocalServer, document: dict[str, Any]) -> None:
        self.session, self.server, self.document = session, server, document
        self.validator = ResponseValidator(document)
        base = document["servers"][0]["url"].rstrip("/")
        self.operations = [
            (method.upper(), re.compile(re.escape(base) + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path))),
             operation["operationId"])
            for path, item in document["paths"].items() for method, operation in item.items()]

    def operation(self, method: str, path: str) -> str | None:
        return next((name for m, template, name in self.operations if m == method and template.fullmatch(path)), None)

    async def __call__(self, method: str, path: str, *, key: str | None = KEY, body: Any = None,
                       headers: dict[str, str] | None = None) -> Answer:
        """``path`` as sent (percent-encoded, with its query string); ``key`` in
        ``x-functions-key`` (None: no key)."""
        sent = dict(headers or {}) | ({"x-functions-key": key} if key is not None else {})
        data = None if body is None else orjson.dumps(body)
        url = yarl.URL(self.server.url + path, encoded=True)
        async with self.session.request(method, url, data=data, headers=sent) as response:
            answer = Answer(response.status, response.headers, await response.read(),
                            self.operation(method, url.raw_path))
        if answer.operation is not None:
            self.validator(answer.operation, func.HttpResponse(
                answer.body, status_code=answer.status, headers=dict(answer.headers),
                mimetype=answer.headers.get("Content-Type", "").split(";")[0] or None))
        return answer


@pytest.fixture(scope="module")
def api(app_env: Any, run: Any) -> Iterator[Api]:
    """The server on a free port of the session's loop, pointed at the session's Azurite
    and Mosquitto; its timer every second (not every minute) and the queue every 0.2 s."""
    stack = contextlib.AsyncExitStack()

    async def start() -> Api:
        server = await stack.enter_async_context(run_server(port=0, key=KEY, timer_period=1, queue_period=0.2))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        async with session.get(f"{server.url}/api/openapi.json") as response:
            assert response.status == 200
            document = await response.json()
        return Api(session, server, document)

    try:
        api = run(start())
    except BaseException:
        run(stack.aclose())
        raise
    yield api
    run(stack.aclose())


def registered(run: Any, device_id: str, **attributes: Any) -> str:
    deliver(run, ev.created_or_updated(device_id, T0, attributes=attributes))
    return device_id


def test_the_server_routes_exactly_the_documented_operations(api: Api) -> None:
    base = api.document["servers"][0]["url"]
    served = {(method, aiohttp_path(f.route, route_prefix())) for f in http_functions() for method in f.methods}
    documented = {(method.upper(), base + path) for path, item in api.document["paths"].items() for method in item}
    assert served == documented


def test_every_documented_path_answers_over_http_as_documented(run: Any, api: Api) -> None:
    device = registered(run, f"tour {uuid.uuid4().hex[:6]}")
    sent = run(api("POST", f"/api/devices/{encoded(device)}/commands", body={"name": "reboot"})).json()
    job = run(api("POST", "/api/commands", body={"name": "x", "target": {"deviceIds": [device]}})).json()
    deliver(run, ev.connected(device, 1, T0) | {"eventType": "Microsoft.EventGrid.MQTTClientSomethingNew"})
    [letter] = run(api("GET", f"/api/deadletters?deviceId={encoded(device)}")).json()["items"]
    values = {"deviceId": encoded(device), "commandId": sent["commandId"], "jobId": job["jobId"],
              "modelName": "never-seen", "stream": letter["stream"], "deadLetterId": letter["deadLetterId"]}
    bodies = {"send_command": {"name": "ping"}, "cancel_command": None,
              "send_fleet_command": {"name": "x", "target": {"deviceIds": [device]}},
              "send_broadcast": {"name": "maintenance", "ttlSeconds": 60}}
    for path, item in api.document["paths"].items():
        for method, operation in item.items():
            name = operation["operationId"]
            concrete = "/api" + re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
            answer = run(api(method.upper(), concrete, body=bodies.get(name) if method == "post" else None))
            assert answer.operation == name, (method, concrete)
            expected = 404 if name == "get_model_stats" else (202 if name.startswith("send_") else 200)
            assert answer.status == expected, (name, answer.status, answer.body)


def test_a_device_id_with_a_space_and_a_slash_reaches_get_device_percent_decoded(run: Any, api: Api) -> None:
    device = registered(run, f"line 2/cam {uuid.uuid4().hex[:6]}%")
    answer = run(api("GET", f"/api/devices/{encoded(device)}"))
    assert encoded(device).count("%2F") == 1 and "%20" in encoded(device) and "%25" in encoded(device)
    assert answer.status == 200 and answer.json()["deviceId"] == device
    listed = run(api("GET", "/api/devices?limit=1000")).json()["items"]
    assert device in [d["deviceId"] for d in listed]
    assert run(api("GET", f"/api/devices/{device.replace(' ', '%20')}")).status == 404, (
        "an unencoded / splits the path, and no route has that many segments")


def test_a_command_is_accepted_with_a_location_that_leads_to_it(run: Any, api: Api) -> None:
    device = registered(run, f"press {uuid.uuid4().hex[:6]}")
    headers = {"Idempotency-Key": "reboot-1", "X-MS-CLIENT-PRINCIPAL-NAME": "ops@example.com"}
    answer = run(api("POST", f"/api/devices/{encoded(device)}/commands", headers=headers,
                     body={"name": "reboot", "payload": {"delaySeconds": 5}, "timeoutSeconds": 60}))
    assert answer.status == 202
    command = answer.json()
    assert (command["deviceId"], command["status"], command["issuedBy"]) == (device, "pending", "function-key"), (
        "a principal header a caller sent is no identity without App Service authentication")
    location = answer.headers["Location"]
    assert location == f"/api/devices/{encoded(device)}/commands/{command['commandId']}"
    followed = run(api("GET", location))
    assert followed.status == 200 and followed.json()["commandId"] == command["commandId"]
    again = run(api("POST", f"/api/devices/{encoded(device)}/commands", headers={"idempotency-key": "reboot-1"},
                    body={"name": "reboot", "payload": {"delaySeconds": 5}, "timeoutSeconds": 60}))
    assert again.status == 200 and again.json()["commandId"] == command["commandId"], (
        "the header reached the function whatever its case")


def test_the_server_runs_the_expiry_timer(run: Any, api: Api) -> None:
    device = registered(run, f"sleeper-{uuid.uuid4().hex[:6]}")
    command = run(api("POST", f"/api/devices/{device}/commands", body={"name": "ping", "timeoutSeconds": 1})).json()
    assert command["status"] == "pending"
    status = command["status"]
    # A bound on liveness, not a timing: the first run expires whatever the session's
    # earlier modules left due (fleet jobs of 1 500 commands), and a loaded CI machine
    # once took longer than 10 s for it.
    deadline = time.monotonic() + 90
    while status == "pending" and time.monotonic() < deadline:
        run(asyncio.sleep(0.5))
        status = run(api("GET", f"/api/devices/{device}/commands/{command['commandId']}")).json()["status"]
    assert status == "expired", "nobody but the server's timer called command_expiry"


def test_the_server_drains_the_fleet_fanout_queue(run: Any, api: Api) -> None:
    line = f"line-{uuid.uuid4().hex[:6]}"
    for n in range(201):  # one more than the job sends before its 202
        registered(run, f"{line}-{n:03d}", line=line)
    answer = run(api("POST", "/api/commands", body={"name": "snapshot", "target": {"attributes": {"line": line}}}))
    assert answer.status == 202 and answer.json()["counts"]["queued"] == 1
    job = answer.json()
    deadline = time.monotonic() + 60  # a bound on liveness on a loaded machine, not a timing
    while job["fanout"] != "done" and time.monotonic() < deadline:
        run(asyncio.sleep(0.3))
        job = run(api("GET", answer.headers["Location"])).json()
    assert (job["fanout"], job["counts"]) == ("done", {"pending": 201}), "nobody but the server drained the queue"


def test_the_runs_metrics_are_served_to_tools_status_on_this_machine(run: Any, api: Api) -> None:
    from tools.status import main

    device = registered(run, f"counted-{uuid.uuid4().hex[:6]}")
    assert run(api("POST", f"/api/devices/{device}/commands", body={"name": "ping"})).status == 202
    answer = run(api("GET", "/local/metrics", key=None))
    assert answer.status == 200 and answer.operation is None, "not a function: no key, not in the document"
    sent = [row for row in answer.json() if row["name"] == "edge.command.sent"]
    assert sent and all(set(row["dimensions"]) == {"outcome"} and row["value"] >= 1 for row in sent)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run(asyncio.to_thread(main, ["--url", api.server.url])) == 0
    assert "edge.command.sent" in printed.getvalue() and "outcome=" in printed.getvalue()


def test_a_function_route_needs_the_key_in_the_header_or_as_code(run: Any, api: Api) -> None:
    for key in (None, "wrong"):
        answer = run(api("GET", "/api/devices", key=key))
        assert (answer.status, answer.body) == (401, b""), key
    assert run(api("GET", f"/api/devices?code={KEY}", key=None)).status == 200
    assert run(api("GET", "/api/devices?code=wrong", key=None)).status == 401
    for anonymous in ("/api/health", "/api/openapi.json"):
        assert run(api("GET", anonymous, key=None)).status == 200


def test_an_unknown_path_or_another_method_is_an_empty_404_as_the_host_answers(run: Any, api: Api) -> None:
    for method, path in [("GET", "/api/nothing"), ("GET", "/devices"), ("DELETE", "/api/devices"),
                         ("PUT", "/api/health"), ("GET", "/api/devices/a/b/c/d/e")]:
        answer = run(api(method, path))
        assert (answer.status, answer.body, answer.operation) == (404, b"", None), (method, path)


def test_a_url_of_4096_bytes_reaches_the_function_and_one_byte_more_is_an_empty_414(run: Any, api: Api) -> None:
    base = "/api/devices?connected=true&pad="  # an unknown query parameter is ignored
    at_limit = base + "x" * (4096 - len(base))
    answer = run(api("GET", at_limit))
    assert answer.status == 200, answer.body
    answer = run(api("GET", at_limit + "x"))
    assert (answer.status, answer.body) == (414, b"")
    assert answer.operation == "list_devices", "the document lists the 414 of every operation"


def test_the_query_reaches_the_function_as_the_host_passes_it(run: Any, api: Api) -> None:
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S") + "+00:00"
    assert run(api("GET", f"/api/alerts?since={since.replace('+', '%2B')}")).status == 200
    plus = run(api("GET", f"/api/alerts?since={since}"))
    assert plus.status == 400 and "%2B" in plus.json()["detail"], "an unencoded + decodes to a space"
    assert run(api("GET", "/api/devices?limit=0")).status == 400
    assert run(api("GET", "/api/devices?limit=")).status == 200, (
        "the host leaves an empty query value out (the Python worker takes no nullable values)")


@pytest.mark.parametrize("template, path", [
    ("devices", "/api/devices"),
    ("devices/{deviceId}/commands", "/api/devices/{deviceId}/commands"),
    ("items/{id:int}", "/api/items/{id:-?[0-9]+}"),
    ("files/{*rest}", "/api/files/{rest:.*}"),
])
def test_host_route_templates_become_aiohttp_paths(template: str, path: str) -> None:
    assert aiohttp_path(template) == path


@pytest.mark.parametrize("constraint, matches, refuses", [
    ("int", ["42", "-7"], ["x", "4.2"]), ("long", ["9007199254740993"], ["1e3"]), ("alpha", ["abc"], ["a1"]),
    ("bool", ["true", "False"], ["yes"]),
    ("guid", ["0f8fad5b-d9cb-469f-a165-70867728950E"], ["0f8fad5b-d9cb-469f-a165-70867728950"]),
])
def test_route_constraints_match_what_the_host_matches(constraint: str, matches: list[str],
                                                      refuses: list[str]) -> None:
    from aiohttp import web

    pattern = web.Application().router.add_resource(aiohttp_path(f"items/{{v:{constraint}}}")).get_info()["pattern"]
    assert [bool(pattern.fullmatch(f"/api/items/{value}")) for value in matches + refuses] == (
        [True] * len(matches) + [False] * len(refuses))


@pytest.mark.parametrize("template", ["items/{id?}", "items/{id=3}", "items/{id:regex(x)}", "items/{id:minlength}"])
def test_a_route_template_the_server_cannot_serve_is_named(template: str) -> None:
    with pytest.raises(ValueError, match=re.escape(template)):
        aiohttp_path(template)


# --------------------------------------------------------------------------- the command line


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def test_the_command_line_prints_its_key_serves_and_stops_everything_on_ctrl_c(run: Any) -> None:
    port = free_port()
    with command_line("--port", str(port)) as (process, lines):
        seen: list[str] = []
        azurite = re.search(r"blob (\d+), queue (\d+), table (\d+)", read_until(lines, "Azurite", seen))
        mosquitto = re.search(r"mqtt://127\.0\.0\.1:(\d+)", read_until(lines, "Mosquitto", seen))
        assert azurite and mosquitto, seen
        ports = [int(p) for p in (*azurite.groups(), *mosquitto.groups())]
        key = read_until(lines, "x-functions-key: ", seen).removeprefix("x-functions-key: ")
        assert all(listening(p) for p in ports)

        async def calls() -> list[tuple[int, Any]]:
            async with aiohttp.ClientSession() as session:
                found = []
                for path, headers in [("/api/health", {}), ("/api/devices", {"x-functions-key": key}),
                                      ("/api/devices", {})]:
                    async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as response:
                        found.append((response.status, await response.read()))
                return found

        health, devices, anonymous = run(calls())
        assert health[0] == 200 and orjson.loads(health[1])["status"] == "ok", "settings point at its services"
        assert devices == (200, b'{"items":[]}') and anonymous == (401, b"")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert not any(listening(p) for p in [port, *ports]), "the server, Azurite and Mosquitto stopped"


def test_the_command_line_uses_given_services_and_may_need_no_key(run: Any, azurite: Azurite,
                                                                   mosquitto: Mosquitto) -> None:
    port = free_port()
    with command_line("--port", str(port), "--no-auth", "--storage", azurite.connection_string,
                      "--broker", mosquitto.url) as (process, lines):
        seen: list[str] = []
        read_until(lines, "No key", seen)
        assert not any(line.startswith(("x-functions-key", "Azurite", "Mosquitto")) for line in seen), seen
        assert not any(azurite.connection_string in line for line in seen), "the connection string is not printed"

        async def devices() -> int:
            async with aiohttp.ClientSession() as session, \
                    session.get(f"http://127.0.0.1:{port}/api/devices") as response:
                return response.status

        assert run(devices()) == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert listening(azurite.table_port) and listening(mosquitto.port), "given services are left running"



def test_with_a_data_folder_no_demo_kept_anything_in_it_serves_an_empty_registry_and_says_so(
        run: Any, tmp_path: Path) -> None:
    port = free_port()
    with command_line("--port", str(port), "--data", str(tmp_path)) as (process, lines):
        seen: list[str] = []
        assert "(in memory)" in read_until(lines, "Azurite", seen)
        assert read_until(lines, "No demo data", seen) == (
            f"No demo data in {tmp_path} (make demo keeps it there): the registry is empty")
        key = read_until(lines, "x-functions-key: ", seen).removeprefix("x-functions-key: ")
        assert not (tmp_path / "key").exists() and len(key) > 30, "a random key, none written"

        async def devices() -> tuple[int, bytes]:
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{port}/api/devices", headers={"x-functions-key": key}) as response:
                return response.status, await response.read()

        assert run(devices()) == (200, b'{"items":[]}')
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_a_data_folder_with_a_given_storage_or_one_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    for args, error in [(["--data", str(tmp_path), "--storage", "UseDevelopmentStorage=true"],
                         "--data serves a demo's Azurite data: not with --storage"),
                        (["--port", "0", "--data", str(tmp_path / "file")],
                         f"{tmp_path / 'file'} cannot hold the demo's data: File exists")]:
        done = subprocess.run([sys.executable, "-m", "tools.serve", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 2 and error in done.stderr, done.stderr
