"""A development stand-in for the Functions host (``func start``), for machines without
Azure Functions Core Tools: the app's HTTP functions on http://127.0.0.1:7071/api/...,
against Azurite and Mosquitto started on free ports.

Routes, methods and auth levels come from the functions' bindings as Microsoft's Python
worker runtime indexed them (``standins.host``), under host.json's ``routePrefix``. A
request reaches the function as the host sends it to the worker (header names
lower-cased, repeated headers and query values joined with commas, empty query values
left out, route parameters percent-decoded, the body as bytes), and the worker converts
it, calls the function on the server's one event loop and converts its answer back
(``Content-Type`` from the mimetype), which is written as the host writes it.
Like the host: an unknown path, or a known path with another method, is a 404 without a
body; a FUNCTION or ADMIN route without the key (``x-functions-key`` header or ``code``
query parameter) is a 401 without a body; an exception in the function is a 500 without
a body; a URL over the platform's 4 KB (4,096 bytes) is a 414 without a body. It is not
the host: no other trigger is served, there is no host storage, no keys API, no
retries, no scale-out; ``make start`` runs the real host.

Besides HTTP it runs the timer that is scheduled every minute (``command_expiry``) and
drains the Storage queues of the queue triggers (``fleet-fanout``, every 2 s), so the
command API works end to end; life cycle events and Event Hub batches are not delivered.
The run's metrics are on ``GET /local/metrics`` (``python -m tools.status``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hmac
import json
import logging
import os
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from standins import triggers
from standins.host import host
from standins.invoke import FUNCTIONS, drain_queue
from standins.services import ROOT, run_azurite, run_mosquitto
from tools.demo_data import DemoData, Unusable
from tools.status import LOCAL_PATH, as_json, figures, install

log = logging.getLogger("tools.serve")

DEFAULT_PORT = 7071
EVERY_MINUTE = "0 * * * * *"
MAX_REQUEST_BYTES = 100 * 1024 * 1024  # the host's default maxRequestBodySize
# "The URL length is limited to 4 KB (4,096 bytes)" (Functions' HTTP trigger limits): the
# platform refuses a longer one with 414 before any function runs.
MAX_URL_BYTES = 4096
ANONYMOUS = "ANONYMOUS"

# Route constraints of the host's templates ({id:int}) as aiohttp patterns.
CONSTRAINTS = {
    "int": r"-?[0-9]+", "long": r"-?[0-9]+", "alpha": r"[A-Za-z]+", "bool": r"(?i:true|false)",
    "guid": r"(?i:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
}
_PARAMETER = re.compile(r"(?P<catch_all>\*{0,2})(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<constraint>[a-z]+))?")


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str  # the host's template, without the route prefix
    methods: tuple[str, ...]  # empty: any method
    auth_level: str  # ANONYMOUS, FUNCTION or ADMIN


def function_names() -> list[str]:
    return [name for name in FUNCTIONS if name]


def trigger(name: str) -> dict[str, Any]:
    """The trigger binding of function ``name``, as the host reads it from the index."""
    return FUNCTIONS[name].trigger


def route_prefix() -> str:
    """host.json's ``extensions.http.routePrefix`` (``api`` when absent)."""
    host = json.loads((ROOT / "host.json").read_text())
    return str(host.get("extensions", {}).get("http", {}).get("routePrefix", "api")).strip("/")


def http_functions() -> list[HttpFunction]:
    """Every function with an HTTP trigger, literal segments before parameters (the
    host's route precedence)."""
    found = []
    for name in function_names():
        binding = trigger(name)
        if binding["type"] == "httpTrigger":
            found.append(HttpFunction(name, str(binding.get("route") or name),
                                      tuple(m.upper() for m in binding.get("methods") or ()),
                                      str(binding.get("authLevel") or "FUNCTION").upper()))
    return sorted(found, key=lambda f: [segment.startswith("{") for segment in f.route.split("/")])


def aiohttp_path(template: str, prefix: str = "api") -> str:
    """The host's route template (``devices/{deviceId}``, ``{id:int}``, ``{*rest}``) as an
    aiohttp path under ``/{prefix}``; anything else (optional or default values, other
    constraints) is a ValueError naming the template."""
    parts = []
    for piece in re.split(r"(\{[^{}]*\})", template.strip("/")):
        if not piece.startswith("{"):
            if "{" in piece or "}" in piece:
                raise ValueError(f"route {template!r}: unbalanced braces")
            parts.append(piece)
            continue
        parameter = _PARAMETER.fullmatch(piece[1:-1])
        if parameter is None or (parameter["constraint"] and parameter["constraint"] not in CONSTRAINTS):
            raise ValueError(f"route {template!r}: {piece} is not supported here (a name, optionally :"
                             f"{', :'.join(CONSTRAINTS)}, or a catch-all *name)")
        pattern = ".*" if parameter["catch_all"] else CONSTRAINTS.get(parameter["constraint"] or "")
        parts.append(f"{{{parameter['name']}:{pattern}}}" if pattern else f"{{{parameter['name']}}}")
    return "/" + "/".join(p for p in (prefix, "".join(parts)) if p)


def _joined(items: Iterable[tuple[str, str]], *, lower: bool = False) -> dict[str, str]:
    """Repeated names as one value, joined with commas (ASP.NET Core's StringValues)."""
    values: dict[str, list[str]] = {}
    for name, value in items:
        values.setdefault(name.lower() if lower else name, []).append(value)
    return {name: ",".join(each) for name, each in values.items()}


async def function_request(request: web.Request) -> Any:
    """The request as the host sends it to the Python worker (which declares no nullable
    values: an empty query value is left out)."""
    return triggers.http_request(
        method=request.method, url=str(request.url), headers=_joined(request.headers.items(), lower=True),
        query={k: v for k, v in _joined(request.query.items()).items() if v},
        params=dict(request.match_info),  # percent-decoded
        body=await request.read())


def web_response(result: triggers.HttpResult) -> web.Response:
    """The function's answer as the host writes it."""
    response = web.Response(status=result.status, body=result.body)
    for name, header in result.headers.items():
        response.headers[name] = header
    return response


def _has_key(request: web.Request, key: str) -> bool:
    given = request.headers.get("x-functions-key") or request.query.get("code") or ""
    return hmac.compare_digest(given.encode(), key.encode())


def _handler(function: HttpFunction, key: str | None) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        if key is not None and function.auth_level != ANONYMOUS and not _has_key(request, key):
            return web.Response(status=401)
        try:
            value = await host().invoke(function.name, await function_request(request))
            return web_response(triggers.http_result(value))
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed)", function.name)
            return web.Response(status=500)

    return handle


@web.middleware
async def _url_limit(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
    """A URL (path and query, as sent) over the platform's 4 KB is an empty 414."""
    if len(request.raw_path.encode()) > MAX_URL_BYTES:
        return web.Response(status=414)
    return await handler(request)


@web.middleware
async def _no_route(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
    """The host answers a path no function serves, and a method the route does not take,
    with an empty 404 (azure-functions-host#10098)."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return web.Response(status=404)


# --------------------------------------------------------------------------- other triggers


@dataclass(frozen=True)
class Job:
    name: str
    period: float
    run: Callable[[], Awaitable[Any]]


def background_jobs(*, timer_period: float = 60.0, queue_period: float = 2.0) -> tuple[list[Job], list[str]]:
    """What the server runs besides HTTP: each timer scheduled every minute (every
    ``timer_period`` seconds, on the clock), each queue trigger on ``AzureWebJobsStorage``
    (its queue drained every ``queue_period`` seconds); and the functions it does not run."""
    jobs: list[Job] = []
    skipped: list[str] = []
    for name in function_names():
        binding = trigger(name)
        if binding["type"] == "timerTrigger" and binding.get("schedule") == EVERY_MINUTE:
            jobs.append(Job(name, timer_period, functools.partial(_timer, name)))
        elif binding["type"] == "queueTrigger" and binding.get("connection", "AzureWebJobsStorage") == \
                "AzureWebJobsStorage":
            jobs.append(Job(name, queue_period, functools.partial(_drain, binding["queueName"], name)))
        elif binding["type"] != "httpTrigger":
            skipped.append(name)
    return jobs, skipped


async def _timer(name: str) -> None:
    await host().invoke(name, triggers.timer())


async def _drain(queue: str, name: str) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    with contextlib.suppress(ResourceNotFoundError):  # nothing was ever queued
        handled = await drain_queue(queue, name)
        if handled:
            log.info("Executed 'Functions.%s' for %d message(s) of queue %s", name, handled, queue)


async def _local_metrics(reader: Any, _: web.Request) -> web.Response:
    """The process's metrics (tools.status), for anyone on this machine: the server
    listens on 127.0.0.1 only."""
    return web.json_response(as_json(figures(reader)))


async def _every(job: Job) -> None:
    """``job`` at each multiple of its period on the clock (a timer fires at second 0 of
    each minute); a failure is logged and the next run comes on time."""
    while True:
        await asyncio.sleep(job.period - time.time() % job.period)
        try:
            await job.run()
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed)", job.name)


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class LocalServer:
    url: str  # http://127.0.0.1:PORT
    key: str | None
    functions: list[HttpFunction]
    jobs: list[Job]
    skipped: list[str]

    def banner(self) -> str:
        prefix = route_prefix()
        lines = [f"Listening on {self.url}"]
        if self.key is not None:
            lines.append(f"x-functions-key: {self.key}")
        else:
            lines.append("No key: --no-auth (every route is anonymous)")
        lines.append("Functions:")
        for function in self.functions:
            anonymous = " (anonymous)" if function.auth_level == ANONYMOUS else ""
            lines.append(f"  {function.name}: [{','.join(function.methods) or '*'}] "
                         f"{self.url}{aiohttp_path(function.route, prefix)}{anonymous}")
        lines += [f"  {job.name}: every {job.period:g} s" for job in self.jobs]
        lines.append(f"Metrics of this run: {self.url}{LOCAL_PATH} (python -m tools.status)")
        if self.skipped:
            lines.append(f"Not run here: {', '.join(self.skipped)}")
        return "\n".join(lines)


@contextlib.asynccontextmanager
async def run_server(*, port: int = DEFAULT_PORT, key: str | None, timer_period: float = 60.0,
                     queue_period: float = 2.0) -> AsyncIterator[LocalServer]:
    """The app served on 127.0.0.1:``port`` (0: a free port) on the running loop, with its
    background jobs, until the block ends. ``key`` None: no route needs a key."""
    functions = http_functions()
    jobs, skipped = background_jobs(timer_period=timer_period, queue_period=queue_period)
    app = web.Application(middlewares=[_url_limit, _no_route], client_max_size=MAX_REQUEST_BYTES)
    prefix = route_prefix()
    resources: dict[str, web.Resource] = {}
    for function in functions:
        path = aiohttp_path(function.route, prefix)
        if path not in resources:
            resources[path] = app.router.add_resource(path)
        for method in function.methods or ("*",):
            resources[path].add_route(method, _handler(function, key))
    reader = install()
    app.router.add_get(LOCAL_PATH, functools.partial(_local_metrics, reader))
    # aiohttp's own request-line limit (8190 bytes, a text/plain 400) lies past the platform's.
    runner = web.AppRunner(app, handle_signals=False, access_log_format='"%r" %s %b %Tfs',
                           max_line_size=4 * MAX_URL_BYTES)
    await runner.setup()
    tasks: list[asyncio.Task[None]] = []
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        tasks = [asyncio.create_task(_every(job)) for job in jobs]
        yield LocalServer(f"http://127.0.0.1:{runner.addresses[0][1]}", key, functions, jobs, skipped)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()


@contextlib.contextmanager
def services(storage: str | None, broker: str | None, *, location: Path | None = None,
             described: str | None = None) -> Iterator[tuple[list[str], dict[str, int]]]:
    """The app's settings pointed at the given services, or at Azurite and Mosquitto
    started on free ports for the block; yields lines saying where they are, and the
    started services' processes (``storage``, ``broker``: the simulator pauses them).
    The Azurite started keeps its data in the folder ``location`` when given (in memory
    otherwise); ``described`` says what that data is."""
    from shared.platform.settings import reset_settings

    with contextlib.ExitStack() as stack:
        lines, pids = [], {}
        if storage is None:
            azurite = stack.enter_context(run_azurite(location=location))
            storage, pids["storage"] = azurite.connection_string, azurite.pid
            what = described or ("(in memory)" if location is None else f"(its data kept in {location})")
            lines.append(f"Azurite {what} on 127.0.0.1: blob {azurite.blob_port}, queue {azurite.queue_port}, "
                         f"table {azurite.table_port} (DataStorage, AzureWebJobsStorage)")
        else:
            lines.append("Storage: --storage (DataStorage, AzureWebJobsStorage)")
        if broker is None:
            mosquitto = stack.enter_context(run_mosquitto())
            broker, pids["broker"] = mosquitto.url, mosquitto.pid
            lines.append(f"Mosquitto (MQTT v5) on {broker} (MQTT_BROKER_URL); watch the commands with "
                         f"mosquitto_sub -h 127.0.0.1 -p {mosquitto.port} -V mqttv5 -v -t 'devices/#' "
                         f"-t 'broadcast/#' -t 'groups/#'")
        else:
            lines.append("MQTT broker: --broker (MQTT_BROKER_URL)")
        os.environ.update({"DataStorage": storage, "AzureWebJobsStorage": storage, "MQTT_BROKER_URL": broker,
                           "COMMAND_TRANSPORT": "mqtt"})
        reset_settings()
        yield lines, {name: pid for name, pid in pids.items() if pid is not None}


async def serve(*, port: int, key: str | None, lines: list[str]) -> None:
    """Serve until Ctrl-C or SIGTERM, then close the app's clients."""
    from shared.commands.transports import reset_transport
    from shared.platform.host_storage import reset_queues
    from shared.platform.storage import reset_data_store

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with run_server(port=port, key=key) as server:
            print("\n".join([*lines, server.banner()]), flush=True)
            await stop.wait()
    finally:
        await reset_transport()
        await reset_queues()
        await reset_data_store()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__, epilog="The key line, 'x-functions-key: KEY', is printed once the server listens.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port on 127.0.0.1 (default 7071; 0: a free one)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--key", help="the function key to accept (default: a random one, printed at start)")
    auth.add_argument("--no-auth", action="store_true", help="accept every request without a key")
    parser.add_argument("--storage", metavar="CONNECTION_STRING",
                        help="use this storage account for DataStorage and AzureWebJobsStorage "
                             "(default: start Azurite in memory on free ports)")
    parser.add_argument("--broker", metavar="mqtt://HOST[:PORT]",
                        help="use this MQTT broker for commands (default: start Mosquitto on a free port)")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="serve the data make demo kept in DIR (DIR/azurite) with its key (DIR/key, unless "
                             "--key or --no-auth) when there is any; make serve passes .demo")
    args = parser.parse_args(argv)
    if args.data is not None and args.storage is not None:
        parser.error("--data serves a demo's Azurite data: not with --storage")
    data = DemoData(args.data) if args.data is not None else None
    key = None if args.no_auth else (args.key or (data.key() if data and data.present() else None)
                                     or secrets.token_urlsafe(32))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        with contextlib.ExitStack() as stack:
            if data is not None and args.storage is None:
                stack.enter_context(data.exclusive())  # no demo writes the folder while it is served
            kept = data.azurite if data is not None and data.present() else None
            lines, _ = stack.enter_context(services(
                args.storage, args.broker, location=kept,
                described=None if kept is None else f"with the data of the last make demo ({kept})"))
            if data is not None and kept is None:
                lines.append(f"No demo data in {data.folder} (make demo keeps it there): the registry is empty")
            if data is not None and kept is not None and not (args.key or args.no_auth):
                lines.append(f"The function key is the demo's ({data.key_file})")
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(serve(port=args.port, key=key, lines=lines))
    except Unusable as exc:
        parser.error(str(exc))
    print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
