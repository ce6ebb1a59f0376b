"""Local stand-ins for the cloud services: Azurite (Blob, Queue, Table) and Mosquitto
(MQTT v5), each started on free loopback ports and stopped with the process that
started it. Used by the tests, ``make demo`` and ``make start``."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

ROOT = Path(__file__).resolve().parent.parent
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_ports(process: subprocess.Popen[bytes], ports: list[int], name: str, timeout: float = 30,
                    output: Path | None = None) -> None:
    """Until each of ``ports`` takes a connection; the process's output (its stdout, or
    the file ``output``) in the error when it exits first."""
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if process.poll() is not None:
            said = output.read_bytes() if output is not None else process.stdout.read() if process.stdout else b""
            output_text = said.decode(errors="replace")
            raise RuntimeError(f"{name} exited with {process.returncode}: {output_text[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{name} did not listen on {pending} within {timeout} s")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", pending[0]), timeout=0.2):
            pending.pop(0)
            continue
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class Azurite:
    blob_port: int
    queue_port: int
    table_port: int
    pid: int | None = None  # the process, when started here (the simulator pauses it)

    @property
    def connection_string(self) -> str:
        base = "http://127.0.0.1:{}/devstoreaccount1"
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={base.format(self.blob_port)};"
            f"QueueEndpoint={base.format(self.queue_port)};"
            f"TableEndpoint={base.format(self.table_port)};"
        )


def azurite_command() -> list[str]:
    local = ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return [str(local)]
    found = shutil.which("azurite")
    if found:
        return [found]
    raise RuntimeError("Azurite is not installed: run `npm ci` in the repository (make setup does)")


def _start_azurite(ports: Azurite, workspace: str, *, in_memory: bool) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [*azurite_command(), *(["--inMemoryPersistence"] if in_memory else ["--location", workspace]),
         "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
         "--blobPort", str(ports.blob_port), "--queuePort", str(ports.queue_port),
         "--tablePort", str(ports.table_port)],
        cwd=workspace,  # Azurite writes its debug and extent files here
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    _wait_for_ports(process, [ports.blob_port, ports.queue_port, ports.table_port], "Azurite")
    return process


@contextlib.contextmanager
def run_azurite(*, fixed_ports: bool = False, location: Path | None = None) -> Iterator[Azurite]:
    """Azurite in memory (or keeping its data in the folder ``location``, made if
    missing) on free ports (or the standard 10000-10002)."""
    ports = Azurite(10000, 10001, 10002) if fixed_ports else Azurite(free_port(), free_port(), free_port())
    with contextlib.ExitStack() as stack:
        if location is None:
            workspace = stack.enter_context(tempfile.TemporaryDirectory(prefix="azurite-"))
        else:
            location.mkdir(parents=True, exist_ok=True)
            workspace = str(location.resolve())  # Azurite runs in it: a relative path would point elsewhere
        process = _start_azurite(ports, workspace, in_memory=location is None)
        try:
            yield dataclasses.replace(ports, pid=process.pid)
        finally:
            _stop(process)


class RestartableAzurite:
    """Azurite keeping its data on disk, so that a test can stop it (an outage) and
    start it again on the same ports with everything it held."""

    def __init__(self, workspace: str) -> None:
        self.ports = Azurite(free_port(), free_port(), free_port())
        self._workspace = workspace
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = _start_azurite(self.ports, self._workspace, in_memory=False)

    def stop(self) -> None:
        """Stop serving (Azurite saves what it holds on the way out: this is an
        outage of the service, not a loss of its disks)."""
        if self._process is not None:
            _stop(self._process)
            self._process = None


@contextlib.contextmanager
def run_restartable_azurite() -> Iterator[RestartableAzurite]:
    with tempfile.TemporaryDirectory(prefix="azurite-disk-") as workspace:
        azurite = RestartableAzurite(workspace)
        azurite.start()
        try:
            yield azurite
        finally:
            azurite.stop()


@dataclass(frozen=True)
class MosquittoTls:
    """A TLS listener as Event Grid's: the broker's certificate and key, and the
    certificates (``cafile``, a PEM bundle) a client's must chain to; the client's
    certificate is required and its subject's CN is its user name. Without ``cafile``
    the broker trusts what :func:`trust` adds while it runs (Event Grid: the clients
    registered with their thumbprints)."""

    certfile: Path
    keyfile: Path
    cafile: Path | None = None


@dataclass(frozen=True)
class Mosquitto:
    port: int
    pid: int | None = None  # the process, when started here (the simulator pauses it)
    tls: bool = False
    internal_port: int | None = None  # a plain loopback listener beside the TLS one (the cloud's side)
    trusted: Path | None = None  # the folder of certificates :func:`trust` adds to (OpenSSL's capath)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def internal_url(self) -> str | None:
        return None if self.internal_port is None else f"mqtt://127.0.0.1:{self.internal_port}"


def subject_hash(certificate: x509.Certificate) -> str:
    """OpenSSL's ``X509_NAME_hash`` of the subject (``openssl x509 -hash``), by which a
    capath folder names its files: the SHA-1 of the name's canonical encoding (each
    value a lower-cased UTF8String with its white space collapsed, the RDN sets without
    the outer SEQUENCE), its first four bytes little-endian."""
    from cryptography import x509
    from cryptography.x509.name import _ASN1Type  # no public way to ask for a UTF8String

    canonical = x509.Name([x509.RelativeDistinguishedName(
        [x509.NameAttribute(a.oid, " ".join(str(a.value).lower().split()), _type=_ASN1Type.UTF8String)
         for a in rdn]) for rdn in certificate.subject.rdns])
    der = canonical.public_bytes()
    length_octets = der[1] & 0x7F if der[1] & 0x80 else 0  # skip the SEQUENCE's tag and length
    digest = hashlib.sha1(der[2 + length_octets:]).digest()  # OpenSSL's name hash, not for security
    return f"{int.from_bytes(digest[:4], 'little'):08x}"


def trust(broker: Mosquitto, certfile: Path) -> None:
    """Trust the certificate in ``certfile`` for client connections from the next
    handshake on: OpenSSL looks certificates up in the capath folder at each
    verification, so the running broker needs no reload (Mosquitto 2.0 does not
    re-read ``cafile`` on SIGHUP)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if broker.trusted is None:
        raise ValueError("this broker was started with a cafile, not a trust folder")
    certificate = x509.load_pem_x509_certificate(certfile.read_bytes())
    name = subject_hash(certificate)
    for index in range(100):  # {hash}.N: certificates whose subjects hash alike
        path = broker.trusted / f"{name}.{index}"
        if not path.exists():
            path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
            path.chmod(0o644)  # a certificate, read by user mosquitto
            return
        if path.read_bytes() == certificate.public_bytes(serialization.Encoding.PEM):
            return
    raise ValueError(f"too many trusted certificates with the subject of {certfile}")


def mosquitto_command() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("Mosquitto is not installed: apt-get install -y mosquitto (make setup does)")


@contextlib.contextmanager
def run_mosquitto(*, port: int | None = None, acl: str | None = None, passwords: dict[str, str] | None = None,
                  tls: MosquittoTls | None = None, internal: bool = False, log_topic: bool = False,
                  ) -> Iterator[Mosquitto]:
    """Mosquitto (MQTT v5 and v3.1.1) on a free loopback port (or ``port``: a broker
    started again where a stopped one was), anonymous access; ``acl`` is the text of an
    ``acl_file``, ``passwords`` (user: password) replace anonymous access, ``tls``
    makes the listener TLS only, for clients with a certificate; ``internal`` adds a
    plain listener on another loopback port; ``log_topic`` has the broker publish its
    notices (clients connecting and leaving) on ``$SYS/broker/log/N``."""
    broker = Mosquitto(port or free_port(), tls=tls is not None, internal_port=free_port() if internal else None)
    with tempfile.TemporaryDirectory(prefix="mosquitto-") as workspace:
        # Started as root, Mosquitto reads these files as user mosquitto.
        Path(workspace).chmod(0o755)
        config = Path(workspace) / "mosquitto.conf"
        lines = [f"listener {broker.port} 127.0.0.1", f"allow_anonymous {'false' if passwords else 'true'}",
                 "persistence false", "log_dest stdout", "log_type error", "log_type warning",
                 # One subscriber (the routing stand-in) takes a whole simulated fleet's messages: the
                 # default of 1 000 queued per client would drop some whenever it falls behind.
                 "max_queued_messages 100000"]
        if log_topic:
            lines += ["log_dest topic", "log_type notice"]
        if acl is not None:
            (Path(workspace) / "acl").write_text(acl)
            lines.append(f"acl_file {Path(workspace) / 'acl'}")
        if passwords:
            password_file = Path(workspace) / "passwords"
            password_file.touch()
            for user, password in passwords.items():
                subprocess.run(["mosquitto_passwd", "-b", str(password_file), user, password], check=True,
                               capture_output=True)
            password_file.chmod(0o644)  # hashed test passwords
            lines.append(f"password_file {password_file}")
        if tls is not None:
            for name in ("certfile", "keyfile", "cafile"):  # copied where user mosquitto may read them
                if getattr(tls, name) is None:
                    continue
                copy = Path(workspace) / f"tls-{name}.pem"
                shutil.copyfile(getattr(tls, name), copy)
                copy.chmod(0o644)  # test material only
                lines.append(f"{name} {copy}")
            if tls.cafile is None:
                trusted = Path(workspace) / "trusted"
                trusted.mkdir(mode=0o755)
                broker = dataclasses.replace(broker, trusted=trusted)
                lines.append(f"capath {trusted}")
            lines += ["require_certificate true", "use_identity_as_username true", "tls_version tlsv1.2"]
        if broker.internal_port is not None:  # after the TLS settings, which belong to the listener before
            lines.append(f"listener {broker.internal_port} 127.0.0.1")
        config.write_text("\n".join(lines) + "\n")
        output = Path(workspace) / "mosquitto.log"  # a file: a pipe nobody reads would fill and stall the broker
        with output.open("wb") as log:
            process = subprocess.Popen([mosquitto_command(), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_ports(process, [p for p in (broker.port, broker.internal_port) if p], "Mosquitto",
                            output=output)
            yield dataclasses.replace(broker, pid=process.pid)
        finally:
            _stop(process)
