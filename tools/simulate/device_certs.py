"""Device certificates for Azure mode (:mod:`tools.simulate.certs` is their command
line): a self-signed X.509 certificate per device, registered by its thumbprint, or,
with the simulator's CA (``ca.pem``, ``ca.key``), one the CA issued with the device id
as its subject's common name. Each pair is kept while it is whole, issued as asked and
valid for a week more, else made anew; the clients are registered by
:mod:`tools.simulate.arm_clients`.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIRECTORY = ROOT / ".simulate" / "certs"
VALIDITY = timedelta(days=365)
RENEW_BEFORE = timedelta(days=7)  # a certificate this close to its end is replaced
CLIENT_NAME = re.compile(r"[A-Za-z0-9\-:._]{1,128}")  # Microsoft.EventGrid/namespaces/clients names
CN_LENGTH = 64  # X.520's upper bound for a common name

CA_VALIDITY = timedelta(days=5 * 365)
CA_COMMON_NAME = "edge-cloud-messaging simulator CA"


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
