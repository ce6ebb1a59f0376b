"""The operator's side of a simulation, local or against Azure: the run's options, the
HTTP client to the app's API with the operator's identity, and the requests and names
both runs share (the steady commands, the fleet's broadcast, the devices' groups)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from tools.simulate.fleet import DEFAULT_SHARES, Faults, Publishing, Shape, SimDevice, publish_fleet

OPERATOR = {"X-MS-CLIENT-PRINCIPAL-NAME": "simulator@contoso.com"}
COMMAND_TIMEOUT_SECONDS = 3  # a silent device's command expires this soon (command_expiry runs every second)
GROUPS = ("line-a", "line-b")
BROADCAST = {"name": "shift-change", "payload": {"shift": "B"}, "ttlSeconds": 600}


@dataclass(frozen=True)
class Options:
    devices: int = 20
    rate: float = 1.0
    duration: float = 10.0
    commands: int | None = None  # default: one per two devices, four at least
    shares: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SHARES))
    seed: int = 7
    bad: bool = False
    spoofed: bool = False
    redeliver: bool = False
    reorder: bool = False
    drop: bool = False
    pause_storage: bool = False
    pause_broker: bool = False
    shape: Shape = field(default_factory=Shape)

    @property
    def faults(self) -> list[str]:
        return [name.replace("_", "-") for name in ("bad", "spoofed", "redeliver", "reorder", "drop",
                                                    "pause_storage", "pause_broker") if getattr(self, name)]


class Api:
    """The operator's side: the app's API over real HTTP, with the function key."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.session.request(method, f"{self.url}/api/{path}", json=body, params=params,
                                        headers=headers) as response:
            return response.status, await response.json(content_type=None) if response.content_length != 0 else None

    async def pages(self, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        query = dict(params or {})
        while True:
            status, page = await self.call("GET", path, params=query)
            if status != 200:
                raise RuntimeError(f"GET /api/{path} answered {status}")
            items += page["items"]
            if not page.get("continuationToken"):
                return items
            query["continuationToken"] = page["continuationToken"]

    async def post(self, path: str, body: Any, *, headers: dict[str, str] | None = None, wanted: int = 202) -> Any:
        """The answer to a POST that must succeed with ``wanted``; a RuntimeError otherwise."""
        status, answer = await self.call("POST", path, body, headers=headers)
        if status != wanted:
            raise RuntimeError(f"POST /api/{path} answered {status}: {answer}")
        return answer

    async def command(self, device_id: str, command_id: str) -> tuple[int, Any]:
        return await self.call("GET", f"devices/{quote(device_id, safe='')}/commands/{command_id}")

    async def current(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each of ``commands`` as the API has it now (those it finds)."""
        found = []
        for command in commands:
            status, body = await self.command(command["deviceId"], command["commandId"])
            if status == 200:
                found.append(body)
        return found


async def publish(options: Options, fleet: list[SimDevice], rng: random.Random) -> Publishing:
    """The fleet publishing as ``options`` say (rate, duration, the bad and spoofed faults, shape)."""
    return await publish_fleet(fleet, rate=options.rate, duration=options.duration,
                               faults=Faults(bad=options.bad, spoofed=options.spoofed), shape=options.shape, rng=rng)


async def send_commands(options: Options, api: Api, fleet: list[SimDevice]) -> list[dict[str, Any]]:
    """Commands to the devices in turn (so every behaviour is commanded), over HTTP."""
    count = options.commands if options.commands is not None else max(4, len(fleet) // 2)
    made = []
    for number in range(count):
        device = fleet[number % len(fleet)]
        made.append(await api.post(f"devices/{quote(device.device_id, safe='')}/commands",
                                   {"name": "set-exposure", "payload": {"ev": number},
                                    "timeoutSeconds": COMMAND_TIMEOUT_SECONDS}))
    print(f"{len(made)} commands sent over HTTP.", flush=True)
    return made


async def send_broadcast(api: Api) -> int:
    await api.post("broadcasts", BROADCAST)
    return 1
