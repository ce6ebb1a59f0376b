"""The devices registered as MQTT clients of the Event Grid namespace through Azure
Resource Manager (docs/deploy.md, "Onboarding a device"; :mod:`tools.simulate.certs`
is their command line): each client validated by its certificate's thumbprint, or by
subject (``SubjectMatchesAuthenticationName``) once the simulator's CA is registered
on the namespace (``caCertificates``). A few requests at a time, each retried on 429,
5xx and dropped connections, each long-running operation followed to its end; a
failure names the device and gives Azure's reason.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urljoin

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from cryptography.hazmat.primitives import serialization

from tools.simulate.device_certs import CA_COMMON_NAME, CertificateAuthority, DeviceCertificate, check_device_id

GROUP = re.compile(r"[A-Za-z0-9._-]{1,64}")  # as send_broadcast names groups

ARM_URL = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
API_VERSION = "2025-02-15"
CONCURRENCY = 8  # ARM's write limits are per subscription: a few requests at a time
ATTEMPTS = 6  # per request, on 429, 5xx and dropped connections
MAX_WAIT = 60.0  # seconds, the longest Retry-After honoured
OPERATION_TIMEOUT = 600.0  # seconds a long-running operation may take
POLL_SECONDS = 2.0  # between looks at an operation, unless its Retry-After says otherwise
TERMINAL = {"Succeeded", "Failed", "Canceled"}

CA_CERTIFICATE_NAME = "simulator-ca"  # its name on the namespace (caCertificates)


class ArmError(RuntimeError):
    """Azure Resource Manager would not do it; the message names the device and gives Azure's reason."""


def client_url(arm_url: str, subscription_id: str, resource_group: str, namespace: str, device_id: str) -> str:
    for what, value in (("subscription id", subscription_id), ("resource group", resource_group),
                        ("namespace", namespace)):
        if not value or "/" in value or value in (".", ".."):
            raise ValueError(f"{what} {value!r} is not a name")
    path = "/".join(quote(part, safe="") for part in (
        "subscriptions", subscription_id, "resourceGroups", resource_group, "providers",
        "Microsoft.EventGrid", "namespaces", namespace, "clients", check_device_id(device_id)))
    return f"{arm_url.rstrip('/')}/{path}?api-version={API_VERSION}"


def client_body(certificate: DeviceCertificate, attributes: Mapping[str, str], *,
                by_subject: bool = False) -> dict[str, Any]:
    """The client resource (``properties`` of Microsoft.EventGrid/namespaces/clients):
    validated by its certificate's thumbprint, or ``by_subject`` (a certificate that a
    CA registered on the namespace issued, whose subject names the device)."""
    if "role" in attributes:
        raise ValueError(f"{certificate.device_id}: attribute 'role' is the tool's (edge-device), not yours")
    group = attributes.get("group")
    if group is not None and not GROUP.fullmatch(group):
        raise ValueError(f"{certificate.device_id}: group {group!r} is not 1-64 of letters, digits, '.', '_', '-'")
    return {"properties": {
        "authenticationName": certificate.device_id,
        "state": "Enabled",
        "attributes": {"role": "edge-device", **attributes},
        "clientCertificateAuthentication": (
            {"validationScheme": "SubjectMatchesAuthenticationName"} if by_subject else
            {"validationScheme": "ThumbprintMatch", "allowedThumbprints": [certificate.thumbprint]}),
    }}


def ca_certificate_url(arm_url: str, subscription_id: str, resource_group: str, namespace: str,
                       name: str = CA_CERTIFICATE_NAME) -> str:
    """The namespace's CA certificate ``name`` (Microsoft.EventGrid/namespaces/caCertificates)."""
    client = client_url(arm_url, subscription_id, resource_group, namespace, name)
    return client.replace("/clients/", "/caCertificates/", 1)


def ca_certificate_body(ca: CertificateAuthority) -> dict[str, Any]:
    """The CA certificate resource: ``encodedCertificate`` is the certificate's DER in
    base64 (the PEM's body without its header lines: what only Azure can confirm is
    whether it wants the header lines too; docs/deploy.md)."""
    der = ca.certificate.public_bytes(serialization.Encoding.DER)
    return {"properties": {"description": CA_COMMON_NAME, "encodedCertificate": base64.b64encode(der).decode()}}


async def register_devices(certificates: Sequence[DeviceCertificate], *, subscription_id: str,
                           resource_group: str, namespace: str, attributes: Mapping[str, Mapping[str, str]],
                           credential: AsyncTokenCredential, arm_url: str = ARM_URL,
                           ca: CertificateAuthority | None = None) -> None:
    """Create or update each device's client (one PUT each, a few at a time), each
    followed to its end; :class:`ArmError` naming every device that failed. With
    ``ca``, the CA certificate is registered on the namespace first, and the clients
    are validated by subject."""
    if ca is not None:
        await _each({CA_CERTIFICATE_NAME: (ca_certificate_url(arm_url, subscription_id, resource_group, namespace),
                                           ca_certificate_body(ca))},
                    credential, lambda arm, name, job: arm.put(name, *job))
    work = {c.device_id: (client_url(arm_url, subscription_id, resource_group, namespace, c.device_id),
                          client_body(c, attributes.get(c.device_id, {}), by_subject=ca is not None))
            for c in certificates}
    await _each(work, credential, lambda arm, device, job: arm.put(device, *job))


async def unregister_devices(device_ids: Sequence[str], *, subscription_id: str, resource_group: str,
                             namespace: str, credential: AsyncTokenCredential, arm_url: str = ARM_URL) -> None:
    """Delete each device's client (one already gone is no error)."""
    work = {d: client_url(arm_url, subscription_id, resource_group, namespace, d) for d in device_ids}
    await _each(work, credential, lambda arm, device, url: arm.delete(device, url))


async def _each(work: Mapping[str, Any], credential: AsyncTokenCredential,
                step: Callable[[_Arm, str, Any], Awaitable[None]]) -> None:
    limit = asyncio.Semaphore(CONCURRENCY)
    failed: dict[str, str] = {}

    async def one(device: str, job: Any) -> None:
        async with limit:
            try:
                await step(arm, device, job)
            except ArmError as error:
                failed[device] = str(error)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        arm = _Arm(session, credential)
        await asyncio.gather(*(one(device, job) for device, job in work.items()))
    if failed:
        raise ArmError(f"{len(failed)} of {len(work)} devices failed:\n"
                       + "\n".join(failed[d] for d in sorted(failed)))


@dataclass
class _Response:
    status: int
    headers: Mapping[str, str]
    body: Any


class _Arm:
    """Requests with a bearer token, retried on 429 and 5xx (as long as Retry-After
    says, up to a minute), and long-running operations followed to their end."""

    def __init__(self, session: aiohttp.ClientSession, credential: AsyncTokenCredential) -> None:
        self.session, self.credential = session, credential

    async def put(self, device: str, url: str, body: dict[str, Any]) -> None:
        response = await self.request(device, "PUT", url, body)
        await self.finish(device, url, response)

    async def delete(self, device: str, url: str) -> None:
        response = await self.request(device, "DELETE", url, missing_ok=True)
        if response.status != 404:
            await self.finish(device, url, response)

    async def finish(self, device: str, url: str, response: _Response) -> None:
        """Follow ``Azure-AsyncOperation`` (its ``status``) or ``Location`` (202 until done)."""
        deadline = time.monotonic() + OPERATION_TIMEOUT
        operation = response.headers.get("Azure-AsyncOperation")
        location = response.headers.get("Location")
        state = _state(response.body)
        if response.status == 204 or state in TERMINAL or not (operation or location):
            _check_state(device, state, response.body)
            return
        while time.monotonic() < deadline:
            await asyncio.sleep(_retry_after(response.headers, default=POLL_SECONDS))
            if operation:
                response = await self.request(device, "GET", urljoin(url, operation))
                status = response.body.get("status") if isinstance(response.body, dict) else None
                if status in TERMINAL:
                    _check_state(device, status, response.body)
                    return
            else:
                response = await self.request(device, "GET", urljoin(url, str(location)), missing_ok=True)
                if response.status != 202:
                    return
        raise ArmError(f"{device}: the operation had not ended after {OPERATION_TIMEOUT:g} s")

    async def request(self, device: str, method: str, url: str, body: dict[str, Any] | None = None,
                      *, missing_ok: bool = False) -> _Response:
        for attempt in range(1, ATTEMPTS + 1):
            token = await self.credential.get_token(ARM_SCOPE)
            headers = {"Authorization": f"Bearer {token.token}"}
            try:
                async with self.session.request(method, url, json=body, headers=headers) as answer:
                    text = await answer.text()
                    response = _Response(answer.status, answer.headers, _json(text))
            except (aiohttp.ClientError, TimeoutError) as error:
                if attempt == ATTEMPTS:
                    raise ArmError(f"{device}: {method} {url.split('?')[0]} failed: {error!r}") from error
                await asyncio.sleep(min(2.0**attempt, MAX_WAIT))
                continue
            if response.status == 429 or response.status >= 500:
                if attempt == ATTEMPTS:
                    raise ArmError(f"{device}: {_reason(response)}, {ATTEMPTS} times")
                await asyncio.sleep(_retry_after(response.headers, default=min(2.0**attempt, MAX_WAIT)))
                continue
            if response.status >= 400 and not (missing_ok and response.status == 404):
                raise ArmError(f"{device}: {_reason(response)}")
            return response
        raise AssertionError("unreachable")


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def _state(body: Any) -> str | None:
    properties = body.get("properties") if isinstance(body, dict) else None
    return properties.get("provisioningState") if isinstance(properties, dict) else None


def _check_state(device: str, state: str | None, body: Any) -> None:
    if state in ("Failed", "Canceled"):
        raise ArmError(f"{device}: the operation ended {state}: {_message(body)}")


def _message(body: Any) -> str:
    """ARM's error (``{"error": {"code", "message"}}``), or what was said."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    return str(body)[:500]


def _reason(response: _Response) -> str:
    return f"Azure Resource Manager answered {response.status}: {_message(response.body)}"


def _retry_after(headers: Mapping[str, str], *, default: float) -> float:
    """Seconds to wait as ``Retry-After`` says (seconds or an HTTP date), a minute at most."""
    value = headers.get("Retry-After")
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (email.utils.parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return default
    return min(max(seconds, 0.0), MAX_WAIT)
