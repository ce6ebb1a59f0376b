"""Device certificates for Azure mode, and the devices registered as MQTT clients of
the Event Grid namespace (docs/deploy.md, "Onboarding a device"), either way Event
Grid authenticates clients:

- by thumbprint (the default): a self-signed X.509 certificate per device, its client
  registered with the certificate's thumbprint;
- by CA chain (``--ca``, for large fleets: no thumbprint per client to keep up to
  date): a CA of the simulator's (``ca.pem``, ``ca.key``) issues each device's
  certificate with the device id as its subject's common name; the CA certificate is
  registered on the namespace (``caCertificates``) and each client validated by
  ``SubjectMatchesAuthenticationName``.

``python -m tools.simulate.certs create|register|delete --devices N [--ca]`` (``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import email.utils
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tools.simulate.target import TargetError, azd_environment

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIRECTORY = ROOT / ".simulate" / "certs"
VALIDITY = timedelta(days=365)
RENEW_BEFORE = timedelta(days=7)  # a certificate this close to its end is replaced
CLIENT_NAME = re.compile(r"[A-Za-z0-9\-:._]{1,128}")  # Microsoft.EventGrid/namespaces/clients names
CN_LENGTH = 64  # X.520's upper bound for a common name
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


CA_VALIDITY = timedelta(days=5 * 365)
CA_COMMON_NAME = "edge-cloud-messaging simulator CA"
CA_CERTIFICATE_NAME = "simulator-ca"  # its name on the namespace (caCertificates)


@dataclass(frozen=True)
class CertificateAuthority:
    certfile: Path
    keyfile: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def ensure_ca(directory: Path) -> CertificateAuthority:
    """The simulator's CA in ``directory`` (``ca.pem``, ``ca.key``): kept when whole and
    valid for a week at least, else made anew (then every device certificate it issued
    is made anew too, as :func:`ensure_certificates` checks the issuer)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    certfile, keyfile = directory / "ca.pem", directory / "ca.key"
    try:
        certificate = x509.load_pem_x509_certificate(certfile.read_bytes())
        key = serialization.load_pem_private_key(keyfile.read_bytes(), password=None)
        usable = (isinstance(key, ec.EllipticCurvePrivateKey) and key.public_key() == certificate.public_key()
                  and certificate.not_valid_after_utc - RENEW_BEFORE > datetime.now(UTC))
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
        usable = False
    if usable:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return CertificateAuthority(certfile, keyfile, certificate, key)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(keyfile, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    _write(certfile, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return CertificateAuthority(certfile, keyfile, certificate, key)


@dataclass(frozen=True)
class DeviceCertificate:
    device_id: str
    certfile: Path
    keyfile: Path
    thumbprint: str  # SHA-256 of the DER, upper-case hex without colons


def check_device_id(device_id: str) -> str:
    """``device_id`` if it can be an Event Grid client's name (the device's
    authentication name), else a ValueError that says what is allowed."""
    if not isinstance(device_id, str) or not CLIENT_NAME.fullmatch(device_id):
        raise ValueError(f"device id {device_id!r} is not an Event Grid client name: "
                         "1-128 letters, digits, '-', ':', '.' or '_'")
    if device_id in (".", ".."):  # a URL path would take it as this folder or the one above: the namespace
        raise ValueError(f"device id {device_id!r} cannot name a client in a URL path")
    return device_id


def device_ids(count: int, prefix: str = "sim-") -> list[str]:
    """The simulator's device ids: ``sim-000``, ``sim-001``, ..."""
    return [check_device_id(f"{prefix}{index:03d}") for index in range(count)]


def thumbprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex().upper()


def ensure_certificates(device_ids: Sequence[str], directory: Path,
                        ca: CertificateAuthority | None = None) -> list[DeviceCertificate]:
    """A certificate and key per device in ``directory`` (``{id}.pem``, ``{id}.key``),
    self-signed or, with ``ca``, issued by it: a pair that is there, issued as asked
    and valid for a week at least is kept (its thumbprint is what is registered), any
    other is made anew."""
    for device_id in device_ids:
        if len(check_device_id(device_id)) > CN_LENGTH:
            raise ValueError(f"device id {device_id!r} is longer than {CN_LENGTH} characters, the most a "
                             "certificate's common name holds (X.509), and the CN is the device id")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # the keys are in it
    found = []
    for device_id in device_ids:
        certfile, keyfile = directory / f"{device_id}.pem", directory / f"{device_id}.key"
        certificate = _usable(device_id, certfile, keyfile, ca) or _create(device_id, certfile, keyfile, ca)
        found.append(DeviceCertificate(device_id, certfile, keyfile, thumbprint(certificate)))
    return found


def _usable(device_id: str, certfile: Path, keyfile: Path,
            ca: CertificateAuthority | None = None) -> x509.Certificate | None:
    """The certificate when the pair is whole, matching, for ``device_id``, issued as
    asked (by ``ca``, else by itself) and not about to expire."""
    try:
        certificate = x509.load_pem_x509_certificate(certfile.read_bytes())
        key = serialization.load_pem_private_key(keyfile.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
        return None  # missing, unreadable, corrupt, encrypted or of a kind we do not make
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [device_id] or key.public_key() != certificate.public_key():
        return None
    if certificate.not_valid_after_utc - RENEW_BEFORE < datetime.now(UTC):
        return None
    issuer = ca.certificate if ca is not None else certificate
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return None
    keyfile.chmod(0o600)
    return certificate


def _create(device_id: str, certfile: Path, keyfile: Path, ca: CertificateAuthority | None = None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    now = datetime.now(UTC)
    issuer, signer = (ca.certificate.subject, ca.key) if ca is not None else (name, key)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # clocks differ
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    certificate = builder.sign(signer, hashes.SHA256())
    _write(keyfile, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    _write(certfile, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return certificate


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Whole or not at all; a key readable by its owner only from the start."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# --------------------------------------------------------------------------- Azure Resource Manager


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


# --------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.simulate.certs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("create", "register", "delete"),
                   help="create certificates; register the devices (creating what is missing); delete them")
    p.add_argument("--devices", type=int, required=True, help="how many: sim-000 to sim-<N-1>")
    p.add_argument("--prefix", default="sim-", help="device id prefix (default sim-, as the simulator's)")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIRECTORY,
                   help=f"certificates and keys (default {DEFAULT_DIRECTORY.relative_to(ROOT)})")
    p.add_argument("--env", help="azd environment (default: AZURE_ENV_NAME, else azd's default)")
    p.add_argument("--project-dir", type=Path, default=Path.cwd(), metavar="DIR",
                   help="where .azure/ is (default: the current directory)")
    p.add_argument("--subscription", help="subscription id (default: the azd environment's)")
    p.add_argument("--resource-group", help="resource group (default: the azd environment's)")
    p.add_argument("--namespace", help="Event Grid namespace (default: the azd environment's)")
    p.add_argument("--group", action="append", help="group attribute, given to the devices in turn when given "
                   "more than once (default: line-a, line-b, as the simulator's)")
    p.add_argument("--type", default="camera", help="type attribute (default camera)")
    p.add_argument("--ca", action="store_true",
                   help="issue the certificates from the simulator's CA (ca.pem in --dir, made if missing), "
                        "register the CA on the namespace and the clients by subject, not thumbprint")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.devices < 1:
            raise ValueError("--devices must be 1 or more")
        ids = device_ids(args.devices, args.prefix)
        if args.action == "create":
            for certificate in ensure_certificates(ids, args.dir, ensure_ca(args.dir) if args.ca else None):
                print(f"{certificate.device_id} {certificate.thumbprint} {certificate.certfile}")
            return 0
        return asyncio.run(_azure(args, ids))
    except (ValueError, ArmError, OSError, TargetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ClientAuthenticationError as error:
        print(f"error: no Azure sign-in to use (`az login` or `azd auth login`): {error.message}", file=sys.stderr)
        return 1


async def _azure(args: argparse.Namespace, ids: list[str]) -> int:
    from azure.identity.aio import DefaultAzureCredential

    from tools.simulate.operator import GROUPS

    env = azd_environment(args.project_dir, args.env, os.environ)[1]
    where = {"subscription_id": args.subscription or env.get("AZURE_SUBSCRIPTION_ID", ""),
             "resource_group": args.resource_group or env.get("AZURE_RESOURCE_GROUP", ""),
             "namespace": args.namespace or env.get("EVENTGRID_NAMESPACE_NAME", "")}
    missing = [flag for flag, key in (("--subscription", "subscription_id"), ("--resource-group", "resource_group"),
                                      ("--namespace", "namespace")) if not where[key]]
    if missing:
        raise ValueError(f"no {', '.join(missing)} given and no azd environment has them "
                         "(run `azd provision`, or pass --env)")
    async with DefaultAzureCredential() as credential:
        if args.action == "delete":
            await unregister_devices(ids, credential=credential, arm_url=ARM_URL, **where)
            print(f"{len(ids)} devices deleted from {where['namespace']}")
            return 0
        groups = args.group or list(GROUPS)
        ca = ensure_ca(args.dir) if args.ca else None
        certificates = ensure_certificates(ids, args.dir, ca)
        attributes = {d: {"type": args.type, "group": groups[i % len(groups)]} for i, d in enumerate(ids)}
        await register_devices(certificates, attributes=attributes, credential=credential, arm_url=ARM_URL,
                               ca=ca, **where)
        print(f"{len(ids)} devices registered in {where['namespace']}; certificates in {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
