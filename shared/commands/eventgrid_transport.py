"""The ``eventgrid`` transport: the Event Grid MQTT broker's HTTP Publish, with the
app's Entra identity, one aiohttp session per process.

What this relies on, from the Azure documentation, "HTTP Publish of MQTT messages with
Azure Event Grid" (learn.microsoft.com/azure/event-grid/mqtt-http-publish) and "Publish
MQTT messages via HTTP with Azure Event Grid" (…/mqtt-how-to-http-publish), a feature
the pages introduced as a preview:

- The request, from the example: ``POST /mqtt/messages?topic=devices%2FCXa-23112%2Fprompt
  &api-version=2025-02-15-preview``, ``Host: nsname.westus3-1.ts.eventgrid.azure.net``
  (the namespace's MQTT hostname), ``Authorization: Bearer <ENTRA_TOKEN_HERE>``.
- The table of request parameters: "Topic name | Percent-encoded string | Query `topic`
  | Yes"; "QoS | 0 or 1 | Query `qos` or header `mqtt-qos` | No [default = 1]"; "`RETAIN`
  flag | 0 or 1 | Query `retain` or header `mqtt-retain` | No [default = 0]"; "Response
  topic | Percent-encoded string | Header `mqtt-response-topic`"; "Correlation data |
  Base64 string | Header `mqtt-correlation-data`"; "User properties | Base64 JSON array |
  Header `mqtt-user-properties`" (the example's value decodes to
  ``[{"Urgency":"alert"},{"RequestId":"55f4a7ee-…"}]``, one object per property, so a
  name may repeat); "Content type | String | Header `content-type`"; "Message expiry
  interval | Unsigned integer | Header `mqtt-message-expiry`"; "Payload | Bytes | HTTP
  body". And: "Use lowercase header keys where possible."
- The token: ``az account get-access-token --resource=https://eventgrid.azure.net``, so
  the scope ``https://eventgrid.azure.net/.default`` (Entra tokens of MQTT clients:
  "`aud` claim must be set to `https://eventgrid.azure.net/`"); "The identity used to make
  the HTTP Publish request must have the Azure RBAC role `EventGrid TopicSpaces
  Publisher`".
- The answers: "204 No Content" or "202 Accepted"; "401 Unauthorized: If the token is
  missing or expired"; "403 Forbidden: If the topic is invalid or you don't have
  rights"; "500 Internal Server Error: If routing fails internally"; and "HTTP Publish
  counts toward your overall MQTT throughput quota", so a throttled publish meets 429.

Every 2xx is success. 429, 408 and 5xx, and a connection failure or timeout, are
retried with exponential backoff and full jitter (``Retry-After`` honoured) within a
bounded total time, then fail as transient; a retried POST may reach the broker twice
(MQTT QoS 1 is at least once anyway). 401 and 403 fail at once, naming the role to
check; other answers fail at once with their status. No token ever appears in an error.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from shared.commands.transport import Publication, PublishError
from shared.platform.errors import TRANSIENT_STATUSES, is_transient

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

log = logging.getLogger(__name__)

# The tested default of the EVENTGRID_PUBLISH_API_VERSION setting (commands/settings.py).
API_VERSION = "2025-02-15-preview"
EVENTGRID_SCOPE = "https://eventgrid.azure.net/.default"
REQUEST_TIMEOUT_SECONDS = 5.0
TOTAL_TIMEOUT_SECONDS = 15.0
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 4.0
ROLE_HINT = ("check that the app's identity holds the EventGrid TopicSpaces Publisher role on the topic space "
             "that holds the topic")


def publish_url(base_url: str, topic: str, api_version: str = API_VERSION) -> URL:
    return URL(f"{base_url}/mqtt/messages?topic={quote(topic, safe='')}&api-version={quote(api_version)}",
               encoded=True)


def publish_headers(publication: Publication, token: str) -> dict[str, str]:
    """The documented headers of one PUBLISH at QoS 1, not retained."""
    headers = {
        "authorization": f"Bearer {token}",
        "mqtt-qos": "1",
        "mqtt-retain": "0",
        "mqtt-message-expiry": str(publication.expiry_seconds),
        "content-type": publication.content_type,
    }
    if publication.response_topic is not None:
        headers["mqtt-response-topic"] = quote(publication.response_topic, safe="")
    if publication.correlation_data is not None:
        headers["mqtt-correlation-data"] = base64.b64encode(publication.correlation_data).decode()
    if publication.user_properties:
        pairs = orjson.dumps([{name: value} for name, value in publication.user_properties])
        headers["mqtt-user-properties"] = base64.b64encode(pairs).decode()
    return headers


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as delay-seconds or an HTTP date (``now`` in Unix seconds)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def backoff_seconds(attempt: int, rng: random.Random) -> float:
    """Full jitter over an exponential ceiling (attempt 0 is the first retry)."""
    return rng.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** attempt))


def refusal(status: int, reason: str) -> PublishError:
    """A final answer no retry changes."""
    if status == 401:
        return PublishError("Event Grid HTTP Publish answered 401 Unauthorized: the app's Entra token was refused "
                            "(check the identity the app runs as, AZURE_CLIENT_ID, and EVENTGRID_MQTT_HOSTNAME)",
                            transient=False)
    if status == 403:
        return PublishError(f"Event Grid HTTP Publish answered 403 Forbidden: {ROLE_HINT}", transient=False)
    return PublishError(f"Event Grid HTTP Publish answered {status} {reason}".rstrip(), transient=False)


def default_credential() -> AsyncTokenCredential:
    """``DefaultAzureCredential``: the managed identity in Azure (a user-assigned one by
    ``AZURE_CLIENT_ID``, which the credential reads itself: passing ``None`` explicitly
    would force the system-assigned identity), a developer's sign-in locally."""
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()


class EventGridTransport:
    """Publishes through HTTP Publish on ``hostname``. ``credential`` defaults to
    :func:`default_credential` (owned and closed here); ``base_url`` replaces
    ``https://{hostname}`` for a local stand-in only (plain http)."""

    def __init__(self, hostname: str, credential: AsyncTokenCredential | None = None, *,
                 base_url: str | None = None, request_timeout: float = REQUEST_TIMEOUT_SECONDS,
                 total_timeout: float = TOTAL_TIMEOUT_SECONDS, rng: random.Random | None = None,
                 api_version: str = API_VERSION) -> None:
        self.base_url = (base_url or f"https://{hostname}").rstrip("/")
        self.api_version = api_version
        self.request_timeout = request_timeout
        self.total_timeout = total_timeout
        self._credential = credential
        self._owns_credential = credential is None
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    @property
    def credential(self) -> AsyncTokenCredential:
        if self._credential is None:
            self._credential = default_credential()
        return self._credential

    def _current_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            # A session of another (closed) loop is dropped, not closed: it cannot run here.
            self._session = aiohttp.ClientSession(raise_for_status=False)
            self._session_loop = loop
        return self._session

    async def publish(self, publication: Publication) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout
        url = publish_url(self.base_url, publication.topic, self.api_version)
        attempt = 0
        while True:
            token = await self._token()
            remaining = deadline - loop.time()
            try:
                async with self._current_session().post(
                        url, data=publication.payload, headers=publish_headers(publication, token),
                        timeout=aiohttp.ClientTimeout(total=max(0.001, min(self.request_timeout, remaining)))
                ) as response:
                    status, reason = response.status, response.reason or ""
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"), time.time())
                    if status not in TRANSIENT_STATUSES and status >= 300:
                        body = (await response.read())[:300]
                        log.warning("Event Grid HTTP Publish refused a message on %s: %s %s", publication.topic,
                                    status, body.decode(errors="replace"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, reason, retry_after = 0, type(exc).__name__, None
            if 200 <= status < 300:
                return
            if status and status not in TRANSIENT_STATUSES:
                raise refusal(status, reason)
            what = f"answered {status} {reason}" if status else f"could not be reached ({reason})"
            delay = retry_after if retry_after is not None else backoff_seconds(attempt, self._rng)
            if loop.time() + delay >= deadline:
                raise PublishError(f"Event Grid HTTP Publish {what} after {attempt + 1} attempts", transient=True,
                                   retry_after=max(1, round(retry_after)) if retry_after is not None else None)
            log.info("Event Grid HTTP Publish %s; retrying in %.2f s", what, delay)
            await asyncio.sleep(delay)
            attempt += 1

    async def _token(self) -> str:
        """An Entra token for Event Grid (the credential caches and refreshes it)."""
        try:
            return (await self.credential.get_token(EVENTGRID_SCOPE)).token
        except Exception as exc:
            from azure.core.exceptions import ClientAuthenticationError

            # A credential with nothing to offer (no identity, a wrong client id) says so
            # without a status; identity endpoints that fail or throttle say so with one.
            if isinstance(exc, ClientAuthenticationError):
                transient = exc.status_code in TRANSIENT_STATUSES
            else:
                transient = is_transient(exc)
            raise PublishError(f"could not get an Entra token for Event Grid ({type(exc).__name__}); check the app's "
                               "managed identity and AZURE_CLIENT_ID", transient=transient) from exc

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
        credential: Any = self._credential
        if self._owns_credential and credential is not None:
            self._credential = None
            await credential.close()
