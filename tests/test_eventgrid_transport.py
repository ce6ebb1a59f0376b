"""The ``eventgrid`` command transport on its own (HTTP Publish to the local stand-in,
which checks every request against the documented contract and forwards it to
Mosquitto): its refusals, throttling and outages, the stand-in refusing what breaks the
contract, and the requests it encodes. What it shares with the ``mqtt`` transport is in
test_transports.py."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import ServiceRequestError
from azure.identity import CredentialUnavailableError
from yarl import URL

from shared.commands.eventgrid_transport import (
    API_VERSION,
    EVENTGRID_SCOPE,
    publish_headers,
    publish_url,
    retry_after_seconds,
)
from shared.commands.transport import Publication, PublishError
from standins.httppublish import HttpPublishServer, run_httppublish
from standins.services import Mosquitto
from tests.support.transports import GRANTS, ONE_DEVICE_TOKEN, TOKEN, command, device, prefix, route

# --- HTTP Publish: refusals, throttling, outages -----------------------------------------


def test_http_publish_asks_for_an_event_grid_token_and_a_401_fails_at_once_without_echoing_it(
        mosquitto: Mosquitto, run: Any) -> None:
    with route("eventgrid", mosquitto, run, token="expired-token-" + uuid.uuid4().hex) as via:
        assert via.server is not None and via.credential is not None
        with pytest.raises(PublishError) as refused:
            run(via.transport.publish(command(prefix())))
        assert via.server.answers == [401]
        assert via.credential.scopes == [(EVENTGRID_SCOPE,)]
        assert via.credential.token not in refused.value.reason
    assert EVENTGRID_SCOPE == "https://eventgrid.azure.net/.default"
    assert not refused.value.transient
    assert "401" in refused.value.reason


def test_a_403_fails_at_once_and_names_the_role_to_check(mosquitto: Mosquitto, run: Any) -> None:
    with route("eventgrid", mosquitto, run, token=ONE_DEVICE_TOKEN) as via:
        assert via.server is not None
        run(via.transport.publish(command("devices/another-device")))  # the token's own topics pass
        with pytest.raises(PublishError) as refused:
            run(via.transport.publish(command(prefix())))
        assert via.server.answers == [204, 403]
    assert not refused.value.transient
    assert "EventGrid TopicSpaces Publisher" in refused.value.reason
    assert ONE_DEVICE_TOKEN not in refused.value.reason


def test_a_429_is_retried_after_its_retry_after_and_the_message_arrives_once(mosquitto: Mosquitto, run: Any) -> None:
    device_prefix = prefix()
    publication = command(device_prefix)
    with device(mosquitto, f"{device_prefix}/#") as subscriber, route("eventgrid", mosquitto, run) as via:
        assert via.server is not None
        via.server.fail_next(429, retry_after="1")
        started = time.monotonic()
        run(via.transport.publish(publication))
        elapsed = time.monotonic() - started
        assert via.server.answers == [429, 204]
        [message] = subscriber.wait_for(1)
    assert elapsed >= 1.0
    assert message.payload == publication.payload


def test_server_errors_are_retried_with_backoff_until_the_time_runs_out_then_fail_as_transient(
        mosquitto: Mosquitto, run: Any) -> None:
    with route("eventgrid", mosquitto, run, timeout=2.0) as via:
        assert via.server is not None
        via.server.fail_next(*[500, 503, 502, 504] * 25)
        started = time.monotonic()
        with pytest.raises(PublishError) as failed:
            run(via.transport.publish(command(prefix())))
        elapsed = time.monotonic() - started
        answers = via.server.answers
    assert failed.value.transient
    assert len(answers) >= 3 and set(answers) <= {500, 502, 503, 504}
    assert elapsed < 2.5, f"gave up after {elapsed:.1f} s"


def test_a_retry_after_beyond_the_time_left_fails_at_once_and_passes_it_on(mosquitto: Mosquitto, run: Any) -> None:
    with route("eventgrid", mosquitto, run) as via:
        assert via.server is not None
        via.server.fail_next(503, retry_after="120")
        started = time.monotonic()
        with pytest.raises(PublishError) as failed:
            run(via.transport.publish(command(prefix())))
        assert via.server.answers == [503]
    assert time.monotonic() - started < 1
    assert failed.value.transient and failed.value.retry_after == 120


@pytest.mark.parametrize(("error", "transient"), [(CredentialUnavailableError("no identity"), False),
                                                  (ServiceRequestError("IMDS unreachable"), True)])
def test_a_credential_that_cannot_give_a_token_fails_the_publish_before_any_request(
        error: Exception, transient: bool, mosquitto: Mosquitto, run: Any) -> None:
    with route("eventgrid", mosquitto, run) as via:
        assert via.server is not None and via.credential is not None
        via.credential.error = error
        with pytest.raises(PublishError) as failed:
            run(via.transport.publish(command(prefix())))
        assert via.server.answers == []
    assert failed.value.transient is transient
    assert "AZURE_CLIENT_ID" in failed.value.reason


# --- the stand-in holds the transport to the documented contract -------------------------

Request = tuple[str, URL, dict[str, str]]
Mutation = Callable[[Request], Request]


def _query(request: Request, changes: dict[str, str | None]) -> Request:
    """The request with query parameters replaced (None removes one), kept as encoded."""
    method, url, headers = request
    parts: dict[str, str | None] = {}
    for part in url.raw_query_string.split("&"):
        name, _, value = part.partition("=")
        parts[name] = value
    raw = "&".join(f"{k}={v}" for k, v in (parts | changes).items() if v is not None)
    return method, URL(f"{url.scheme}://{url.raw_authority}{url.raw_path}?{raw}", encoded=True), headers


def _header(request: Request, name: str, value: str | None) -> Request:
    method, url, headers = request
    changed = {k: v for k, v in headers.items() if k != name}
    if value is not None:
        changed[name] = value
    return method, url, changed


# Each case: how the valid request is broken, the status, and what the refusal says.
MALFORMED: dict[str, tuple[Mutation, int, str]] = {
    "no Authorization header": (lambda r: _header(r, "authorization", None), 401, "bearer token is required"),
    "a token the broker does not know": (
        lambda r: _header(r, "authorization", "Bearer forged"), 401, "token is not valid"),
    "another scheme than Bearer": (
        lambda r: _header(r, "authorization", f"Basic {TOKEN}"), 401, "bearer token is required"),
    "a token without rights on the topic": (
        lambda r: _header(r, "authorization", f"Bearer {ONE_DEVICE_TOKEN}"), 403, "may not publish to this topic"),
    "no api-version": (lambda r: _query(r, {"api-version": None}), 400, "api-version must be"),
    "another api-version": (lambda r: _query(r, {"api-version": "2023-06-01-preview"}), 400, "api-version must be"),
    "no topic": (lambda r: _query(r, {"topic": None}), 400, "topic is required"),
    "a topic not percent-encoded": (
        lambda r: _query(r, {"topic": "devices/cam/commands/reboot"}), 400, "topic must be percent-encoded"),
    "a wildcard topic": (
        lambda r: _query(r, {"topic": "devices%2F%2B%2Fcommands%2Freboot"}), 400, "without wildcards"),
    "an unknown query parameter": (lambda r: _query(r, {"priority": "high"}), 400, "unknown query parameter"),
    "a repeated query parameter": (
        lambda r: (r[0], URL(str(r[1]) + "&qos=1&qos=0", encoded=True), r[2]), 400, "is repeated"),
    "QoS 2": (lambda r: _header(r, "mqtt-qos", "2"), 400, "qos must be 0 or 1"),
    "retain as a word": (lambda r: _header(r, "mqtt-retain", "false"), 400, "retain must be 0 or 1"),
    "a response topic not percent-encoded": (
        lambda r: _header(r, "mqtt-response-topic", "devices/cam/r"), 400, "mqtt-response-topic must be percent"),
    "correlation data not in base64": (
        lambda r: _header(r, "mqtt-correlation-data", "cmd 1!"), 400, "mqtt-correlation-data must be base64"),
    "user properties as plain JSON": (
        lambda r: _header(r, "mqtt-user-properties", '[{"commandId":"1"}]'), 400, "must be a base64 JSON array"),
    "user properties not objects of strings": (
        lambda r: _header(r, "mqtt-user-properties", base64.b64encode(b'[{"n":1}]').decode()), 400,
        "objects of strings"),
    "a negative message expiry": (
        lambda r: _header(r, "mqtt-message-expiry", "-1"), 400, "mqtt-message-expiry must be"),
    "a message expiry beyond 32 bits": (
        lambda r: _header(r, "mqtt-message-expiry", str(2**32)), 400, "mqtt-message-expiry must be"),
    "an unknown mqtt- header": (lambda r: _header(r, "mqtt-priority", "1"), 400, "unknown header mqtt-priority"),
    "a payload format indicator of 1 over bytes that are not UTF-8": (
        lambda r: _header(r, "mqtt-payload-format-indicator", "1"), 400, "payload is not UTF-8"),
    "GET": (lambda r: ("GET", r[1], r[2]), 405, "only POST"),
    "another path": (lambda r: (r[0], r[1].with_path("/mqtt/message"), r[2]), 404, "no such resource"),
}


@pytest.fixture(scope="module")
def stand_in(mosquitto: Mosquitto, run: Any) -> Iterator[HttpPublishServer]:
    context = run_httppublish(mosquitto.url, GRANTS)
    yield run(context.__aenter__())
    run(context.__aexit__(None, None, None))


async def _send(request: Request, body: bytes) -> tuple[int, str]:
    method, url, headers = request
    async with aiohttp.ClientSession() as session, session.request(method, url, headers=headers, data=body) as answer:
        return answer.status, await answer.text()


@pytest.mark.parametrize("case", list(MALFORMED))
def test_the_stand_in_refuses_a_request_that_breaks_the_contract_and_publishes_nothing(
        case: str, stand_in: HttpPublishServer, mosquitto: Mosquitto, run: Any) -> None:
    device_prefix = prefix()
    publication = command(device_prefix)
    valid: Request = ("POST", publish_url(stand_in.url, publication.topic), publish_headers(publication, TOKEN))
    mutate, status, why = MALFORMED[case]
    body = b"\xff" + publication.payload  # only the payload-format case looks at it
    with device(mosquitto, f"{device_prefix}/#") as subscriber:
        answer, text = run(_send(mutate(valid), body))
        assert (answer, why in text) == (status, True), text
        # Then a valid request on the same topic: had the refused one been forwarded,
        # it would have arrived first.
        assert run(_send(valid, publication.payload))[0] == 204
        messages = subscriber.wait_for(1)
        assert [m.payload for m in messages] == [publication.payload]
# --- pure parts --------------------------------------------------------------------------


def test_requests_are_encoded_as_the_documentation_example() -> None:
    # The example of learn.microsoft.com/azure/event-grid/mqtt-http-publish.
    correlation = ">U±¶¶»/".encode()
    publication = Publication(topic="devices/CXa-23112/prompt", payload=b"Please accept terms of licensing and "
                              b"agreement", expiry_seconds=60, response_topic="devices/CXa-23112/reply",
                              correlation_data=correlation,
                              user_properties=(("Urgency", "alert"),
                                               ("RequestId", "55f4a7ee-b0b4-4d7f-8eb5-2edba2ced5d7")),
                              content_type="text/plain;charset=UTF-8")
    url = publish_url("https://nsname.westus3-1.ts.eventgrid.azure.net", publication.topic)
    assert str(url) == ("https://nsname.westus3-1.ts.eventgrid.azure.net/mqtt/messages"
                        f"?topic=devices%2FCXa-23112%2Fprompt&api-version={API_VERSION}")
    assert API_VERSION == "2025-02-15-preview"
    assert publish_headers(publication, "<ENTRA_TOKEN_HERE>") == {
        "authorization": "Bearer <ENTRA_TOKEN_HERE>",
        "mqtt-qos": "1",
        "mqtt-retain": "0",
        "mqtt-response-topic": "devices%2FCXa-23112%2Freply",
        "mqtt-correlation-data": "PlXCscK2wrbCuy8=",
        "mqtt-user-properties": "W3siVXJnZW5jeSI6ImFsZXJ0In0seyJSZXF1ZXN0SWQiOiI1NWY0YTdlZS1iMGI0LTRkN2YtOGViNS0yZWRiYT"
                                "JjZWQ1ZDcifV0=",
        "mqtt-message-expiry": "60",
        "content-type": "text/plain;charset=UTF-8",
    }


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = time.time()
    assert retry_after_seconds("7", now) == 7
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now) == 0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_the_http_publish_api_version_is_a_setting_with_the_tested_default() -> None:
    from shared.commands.settings import CommandSettings
    from shared.platform.settings import SettingsError, load

    assert load(CommandSettings, {}).eventgrid_publish_api_version == "2025-02-15-preview"
    newer = load(CommandSettings, {"EVENTGRID_PUBLISH_API_VERSION": "2026-06-01-preview"})
    url = publish_url("https://ns.westus3-1.ts.eventgrid.azure.net", "devices/d/commands/c",
                      newer.eventgrid_publish_api_version)
    assert url.query["api-version"] == "2026-06-01-preview"
    with pytest.raises(SettingsError, match="EVENTGRID_PUBLISH_API_VERSION"):
        load(CommandSettings, {"EVENTGRID_PUBLISH_API_VERSION": "latest&topic=x"})
