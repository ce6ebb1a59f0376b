"""Local stand-ins for the cloud services: Azurite (Blob, Queue, Table) and Mosquitto
(MQTT v5), each started on free loopback ports and stopped with the process that
started it. Used by the tests, ``make demo`` and ``make start``."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_ports(process: subprocess.Popen[bytes], ports: list[int], name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"{name} exited with {process.returncode}: {output[-2000:]}")
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
    certificate is required and its subject's CN is its user name."""

    certfile: Path
    keyfile: Path
    cafile: Path


@dataclass(frozen=True)
class Mosquitto:
    port: int
    pid: int | None = None  # the process, when started here (the simulator pauses it)
    tls: bool = False

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"


def mosquitto_command() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("Mosquitto is not installed: apt-get install -y mosquitto (make setup does)")


@contextlib.contextmanager
def run_mosquitto(*, port: int | None = None, acl: str | None = None,
                  passwords: dict[str, str] | None = None, tls: MosquittoTls | None = None) -> Iterator[Mosquitto]:
    """Mosquitto (MQTT v5 and v3.1.1) on a free loopback port (or ``port``: a broker
    started again where a stopped one was), anonymous access; ``acl`` is the text of an
    ``acl_file``, ``passwords`` (user: password) replace anonymous access, ``tls``
    makes the listener TLS only, for clients with a certificate."""
    broker = Mosquitto(port or free_port(), tls=tls is not None)
    with tempfile.TemporaryDirectory(prefix="mosquitto-") as workspace:
        # Started as root, Mosquitto reads these files as user mosquitto.
        Path(workspace).chmod(0o755)
        config = Path(workspace) / "mosquitto.conf"
        lines = [f"listener {broker.port} 127.0.0.1", f"allow_anonymous {'false' if passwords else 'true'}",
                 "persistence false", "log_dest stdout", "log_type error", "log_type warning"]
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
                copy = Path(workspace) / f"tls-{name}.pem"
                shutil.copyfile(getattr(tls, name), copy)
                copy.chmod(0o644)  # test material only
                lines.append(f"{name} {copy}")
            lines += ["require_certificate true", "use_identity_as_username true", "tls_version tlsv1.2"]
        config.write_text("\n".join(lines) + "\n")
        process = subprocess.Popen(
            [mosquitto_command(), "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_ports(process, [broker.port], "Mosquitto")
            yield dataclasses.replace(broker, pid=process.pid)
        finally:
            _stop(process)
