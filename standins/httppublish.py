"""A local stand-in for the Event Grid MQTT broker's HTTP Publish, in front of an MQTT v5
broker (Mosquitto): an aiohttp server on a free loopback port that accepts exactly the
documented request (quoted in ``shared/commands/eventgrid_transport.py``) and forwards it
as one MQTT v5 PUBLISH with the same properties, answering 204 only after the broker's
PUBACK. Used by the tests, and by anyone running the ``eventgrid`` transport locally::

    python -m standins.httppublish --broker mqtt://127.0.0.1:1883 --token dev --port 8765

Answers, as the documentation lists them: 204 published; 400 a malformed request (an
unknown or repeated query parameter, another api-version, a topic or header that breaks
its rule); 401 no bearer token, or one it does not know; 403 a topic the token may not
publish to, or one the broker refused; 500 the broker could not take the message.
Another path is 404 and another method 405. ``fail_next`` makes it answer the next valid
requests with a status of the test's choosing (throttling, an outage).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import re
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from urllib.parse import unquote

import orjson
import paho.mqtt.client as mqtt
from aiohttp import web
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shared.commands.eventgrid_transport import API_VERSION
from shared.commands.mqtt_transport import MqttTransport
from shared.commands.transport import PublishError

QUERY_PARAMETERS = frozenset({"topic", "api-version", "qos", "retain"})
MQTT_HEADERS = frozenset({"mqtt-qos", "mqtt-retain", "mqtt-response-topic", "mqtt-correlation-data",
                          "mqtt-user-properties", "mqtt-message-expiry", "mqtt-payload-format-indicator"})
# Characters a percent-encoded topic cannot hold as they are.
UNENCODED = re.compile(r"[/+#?&=\s%]")
MAX_EXPIRY = 2**32 - 1


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad(message: str) -> Refused:
    return Refused(400, message)


def topic_name(raw: str, what: str) -> str:
    """A percent-encoded MQTT topic name, decoded: 1-65535 bytes of UTF-8, no wildcard,
    no NUL, not a ``$`` topic."""
    if UNENCODED.search(re.sub(r"%[0-9A-Fa-f]{2}", "", raw)):
        raise bad(f"{what} must be percent-encoded")
    try:
        topic = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise bad(f"{what} must be UTF-8") from None
    if not 0 < len(topic.encode()) <= 65535 or any(c in topic for c in "+#\0") or topic.startswith("$"):
        raise bad(f"{what} must be an MQTT topic name without wildcards")
    return topic


def flag(value: str | None, what: str, default: int) -> int:
    if value is None:
        return default
    if value not in ("0", "1"):
        raise bad(f"{what} must be 0 or 1")
    return int(value)


def query_parameters(raw_query: str) -> dict[str, str]:
    """The raw (still percent-encoded) values; each parameter at most once."""
    values: dict[str, str] = {}
    for part in raw_query.split("&") if raw_query else ():
        name, sep, value = part.partition("=")
        name = unquote(name)
        if not sep or name not in QUERY_PARAMETERS:
            raise bad(f"unknown query parameter {name!r}")
        if name in values:
            raise bad(f"query parameter {name!r} is repeated")
        values[name] = value
    return values


def user_properties(raw: str) -> list[tuple[str, str]]:
    try:
        items = orjson.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, orjson.JSONDecodeError):
        raise bad("mqtt-user-properties must be a base64 JSON array") from None
    if not isinstance(items, list) or not all(
            isinstance(item, dict) and all(isinstance(v, str) for v in item.values()) for item in items):
        raise bad("mqtt-user-properties must be a JSON array of objects of strings")
    return [(name, value) for item in items for name, value in item.items()]


class HttpPublishServer:
    """The stand-in's state: who may publish where (``grants``: token -> topic filters),
    its forwarding MQTT connection, the status of every request it answered."""

    def __init__(self, broker_url: str, grants: Mapping[str, Sequence[str]], *, mqtt_timeout: float = 5.0) -> None:
        self.grants = {token: tuple(filters) for token, filters in grants.items()}
        self.forwarder = MqttTransport.from_url(broker_url, timeout=mqtt_timeout)
        self.answers: list[int] = []
        self.url = ""
        self._faults: deque[tuple[int, str | None]] = deque()

    def fail_next(self, *statuses: int, retry_after: str | None = None) -> None:
        """Answer the next valid requests with ``statuses``, in order, instead of publishing."""
        self._faults.extend((status, retry_after) for status in statuses)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            await self._publish(request)
            response = web.Response(status=204)
        except Refused as refused:
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if refused.status == 401 else {}
            response = web.json_response({"error": {"code": str(refused.status), "message": refused.message}},
                                         status=refused.status, headers=headers)
        except _Fault as fault:
            response = web.json_response({"error": {"code": str(fault.status), "message": "injected"}},
                                         status=fault.status,
                                         headers={"Retry-After": fault.retry_after} if fault.retry_after else {})
        self.answers.append(response.status)
        return response

    async def _publish(self, request: web.Request) -> None:
        if request.path != "/mqtt/messages":
            raise Refused(404, "no such resource")
        if request.method != "POST":
            raise Refused(405, "only POST publishes")
        token = self._token(request)
        query = query_parameters(request.rel_url.raw_query_string)
        if "topic" not in query:
            raise bad("query parameter topic is required")
        if query.get("api-version") != API_VERSION:
            raise bad(f"api-version must be {API_VERSION}")
        topic = topic_name(query["topic"], "topic")
        headers = {name.lower(): request.headers.getall(name) for name in request.headers}
        for name, values in headers.items():
            if name.startswith("mqtt-") and name not in MQTT_HEADERS:
                raise bad(f"unknown header {name}")
            if len(values) > 1:
                raise bad(f"header {name} is repeated")
        header = {name: values[0] for name, values in headers.items()}
        qos = flag(query.get("qos", header.get("mqtt-qos")), "qos", 1)
        retain = flag(query.get("retain", header.get("mqtt-retain")), "retain", 0)
        properties = self._properties(header)
        body = await request.read()
        if getattr(properties, "PayloadFormatIndicator", 0) == 1:
            try:
                body.decode()
            except UnicodeDecodeError:
                raise bad("the payload is not UTF-8 but mqtt-payload-format-indicator says it is") from None
        if not any(mqtt.topic_matches_sub(pattern, topic) for pattern in self.grants[token]):
            raise Refused(403, "the identity may not publish to this topic")
        if self._faults:
            raise _Fault(*self._faults.popleft())
        try:
            await self.forwarder.publish_message(topic, body, properties, qos=qos, retain=bool(retain))
        except PublishError as exc:
            raise Refused(500 if exc.transient else 403, exc.reason) from None

    def _token(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            raise Refused(401, "a bearer token is required")
        if token not in self.grants:
            raise Refused(401, "the token is not valid")
        return token

    @staticmethod
    def _properties(header: Mapping[str, str]) -> Properties:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if "mqtt-response-topic" in header:
            properties.ResponseTopic = topic_name(header["mqtt-response-topic"], "mqtt-response-topic")
        if "mqtt-correlation-data" in header:
            try:
                properties.CorrelationData = base64.b64decode(header["mqtt-correlation-data"], validate=True)
            except binascii.Error:
                raise bad("mqtt-correlation-data must be base64") from None
        if "mqtt-user-properties" in header:
            properties.UserProperty = user_properties(header["mqtt-user-properties"])
        if "mqtt-message-expiry" in header:
            expiry = header["mqtt-message-expiry"]
            if not (expiry.isascii() and expiry.isdigit() and int(expiry) <= MAX_EXPIRY):
                raise bad("mqtt-message-expiry must be an unsigned 32-bit integer")
            properties.MessageExpiryInterval = int(expiry)
        if "mqtt-payload-format-indicator" in header:
            properties.PayloadFormatIndicator = flag(header["mqtt-payload-format-indicator"],
                                                     "mqtt-payload-format-indicator", 0)
        if "content-type" in header:
            properties.ContentType = header["content-type"]
        return properties


class _Fault(Exception):
    def __init__(self, status: int, retry_after: str | None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


@contextlib.asynccontextmanager
async def run_httppublish(broker_url: str, grants: Mapping[str, Sequence[str]], *, port: int = 0,
                          mqtt_timeout: float = 5.0) -> AsyncIterator[HttpPublishServer]:
    """The stand-in serving on 127.0.0.1 (a free port unless ``port``) until the block ends."""
    server = HttpPublishServer(broker_url, grants, mqtt_timeout=mqtt_timeout)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        yield server
    finally:
        await runner.cleanup()
        await server.forwarder.close()


async def serve(broker_url: str, token: str, port: int) -> None:
    async with run_httppublish(broker_url, {token: ["#"]}, port=port) as server:
        print(f"HTTP Publish stand-in on {server.url}, forwarding to {broker_url}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="MQTT v5 broker to forward to")
    parser.add_argument("--token", required=True, help="the bearer token to accept (may publish anywhere)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.broker, args.token, args.port))


if __name__ == "__main__":
    main()
