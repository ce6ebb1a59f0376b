"""Devices over TLS with the certificates ``tools.simulate.device_certs`` makes, against a
Mosquitto TLS listener that stands for Event Grid's: a client certificate is
required and must be one of the registered devices' self-signed certificates (the
``cafile`` bundle here, the thumbprints on the clients there), and its CN is the
client's user name (there: the user name must be the client's authentication name).
The broker's certificate comes from a test CA the devices are given to trust; with
Event Grid they trust the system's store.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import paho.mqtt.publish as publish
import pytest
from cryptography import x509

from standins.edge import Device, Inbox, TlsClient, _address
from standins.services import Mosquitto, MosquittoTls, run_mosquitto, subject_hash, trust
from tests.support.tls import broker_certificate
from tools.simulate.device_certs import DeviceCertificate, ensure_certificates
from tools.simulate.fleet import SimDevice


@dataclass(frozen=True)
class Pki:
    ca: Path  # the test CA that signed the broker's certificate
    devices: dict[str, DeviceCertificate]  # registered: in the broker's bundle
    outsider: DeviceCertificate  # made the same way, never registered


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, _, _ = broker_certificate(folder)
    *registered, outsider = ensure_certificates(["sim-000", "sim-001", "cloud", "sim-999"], folder / "devices")
    return Pki(ca, {c.device_id: c for c in registered}, outsider)


@pytest.fixture(scope="module")
def broker(pki: Pki) -> Iterator[Mosquitto]:
    folder = pki.ca.parent
    bundle = folder / "registered.pem"
    bundle.write_bytes(b"".join(c.certfile.read_bytes() for c in pki.devices.values()))
    with run_mosquitto(tls=MosquittoTls(folder / "broker.pem", folder / "broker.key", bundle)) as service:
        yield service


def tls(certificate: DeviceCertificate, cafile: Path | None) -> TlsClient:
    return TlsClient(certificate.certfile, certificate.keyfile, cafile)


def test_a_registered_device_connects_publishes_and_answers_a_command_over_tls(pki: Pki, broker: Mosquitto) -> None:
    assert broker.url.startswith("mqtts://127.0.0.1:")
    cloud = Inbox(broker.url, ["devices/+/telemetry", "devices/+/commands/+/response"], client_id="cloud",
                  tls=tls(pki.devices["cloud"], pki.ca))
    device = SimDevice("sim-000", broker.url, tls=tls(pki.devices["sim-000"], pki.ca), username="sim-000")
    try:
        device.connect()
        device.publish("devices/sim-000/telemetry", orjson.dumps({"temperature": 21.5}))
        host, port = _address(broker.url)
        command = {"commandId": "c-1", "name": "reboot"}
        publish.single("devices/sim-000/commands/reboot", orjson.dumps(command), qos=1, hostname=host, port=port,
                       client_id="cloud-publisher", protocol=mqtt.MQTTv5,
                       tls={"ca_certs": str(pki.ca), "certfile": str(pki.devices["cloud"].certfile),
                            "keyfile": str(pki.devices["cloud"].keyfile)})
        (received,) = device.wait_for(1)
        assert (received.topic, received.payload) == ("devices/sim-000/commands/reboot", command)
        arrived: list[tuple[str, bytes]] = []
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while len(arrived) < 2 and datetime.now(UTC) < deadline:
            arrived += cloud.take()
            time.sleep(0.02)  # messages arrive on paho's thread
        assert sorted((topic, orjson.loads(payload)) for topic, payload in arrived) == [
            ("devices/sim-000/commands/c-1/response",
             {"commandId": "c-1", "status": "succeeded", "result": {"done": "reboot"}}),
            ("devices/sim-000/telemetry", {"temperature": 21.5}),
        ]
    finally:
        device.disconnect()
        cloud.close()


def test_a_device_reconnects_with_its_certificate(pki: Pki, broker: Mosquitto) -> None:
    """As the simulator's dropped connections do: the same client, connected again."""
    device = Device("sim-001", broker.url, tls=tls(pki.devices["sim-001"], pki.ca), username="sim-001")
    device.connect()
    device.disconnect()
    device.connect()
    device.disconnect()


def test_a_device_whose_certificate_is_not_registered_is_refused_with_a_clear_error(
    pki: Pki, broker: Mosquitto
) -> None:
    device = Device("sim-999", broker.url, tls=tls(pki.outsider, pki.ca), username="sim-999")
    with pytest.raises(ConnectionRefusedError) as refused:
        device.connect()
    message = str(refused.value)
    assert message.startswith(f"sim-999: 127.0.0.1:{broker.port} refused the connection: ")
    assert f"the broker did not accept the client certificate {pki.outsider.certfile}" in message


def test_a_broker_that_refuses_the_connect_gives_its_reason() -> None:
    """The MQTT refusal (a CONNACK with a failure reason), here for a missing password."""
    with run_mosquitto(passwords={"someone": "secret"}) as closed:
        device = Device("sim-000", closed.url, username="sim-000")
        with pytest.raises(ConnectionRefusedError, match=r"sim-000: 127\.0\.0\.1:\d+ refused the connection: Not"):
            device.connect()


def test_a_broker_whose_certificate_the_device_does_not_trust_is_refused(pki: Pki, broker: Mosquitto) -> None:
    """With no ``cafile`` the device trusts the system's store (as for Event Grid),
    which does not hold the test CA."""
    for cafile in (None, pki.devices["sim-000"].certfile):
        device = Device("sim-000", broker.url, tls=tls(pki.devices["sim-000"], cafile))
        untrusted = r"sim-000: TLS with 127\.0\.0\.1:\d+ failed: .*certificate verify"
        with pytest.raises(ConnectionRefusedError, match=untrusted):
            device.connect()


def test_tls_settings_that_cannot_work_are_refused_when_the_device_is_made(pki: Pki, tmp_path: Path) -> None:
    good = pki.devices["sim-000"]
    with pytest.raises(ValueError, match="a client certificate needs an mqtts:// broker URL"):
        Device("sim-000", "mqtt://127.0.0.1:1883", tls=tls(good, None))
    with pytest.raises(ValueError, match="the scheme must be mqtt:// or mqtts://"):
        Device("sim-000", "https://127.0.0.1:8883")
    with pytest.raises(ValueError, match="sim-000: cannot use the TLS files"):
        Device("sim-000", "mqtts://127.0.0.1", tls=TlsClient(tmp_path / "missing.pem", good.keyfile))
    with pytest.raises(ValueError, match="sim-000: cannot use the TLS files"):  # another device's key
        Device("sim-000", "mqtts://127.0.0.1", tls=TlsClient(good.certfile, pki.devices["sim-001"].keyfile))


def test_broker_urls_take_the_mqtt_ports_by_default() -> None:
    assert _address("mqtt://broker.local") == ("broker.local", 1883)
    assert _address("mqtts://broker.local") == ("broker.local", 8883)
    assert _address("mqtts://127.0.0.1:18883") == ("127.0.0.1", 18883)


def test_a_certificate_trusted_while_the_broker_runs_is_accepted_from_the_next_connection(pki: Pki) -> None:
    """Without a cafile the broker trusts what :func:`standins.services.trust` adds (as
    Event Grid accepts a client once its thumbprint is registered), with no restart."""
    folder = pki.ca.parent
    with run_mosquitto(tls=MosquittoTls(folder / "broker.pem", folder / "broker.key")) as service:
        device = Device("sim-001", service.url, tls=tls(pki.devices["sim-001"], pki.ca), username="sim-001")
        with pytest.raises(ConnectionRefusedError, match="did not accept the client certificate"):
            device.connect()
        trust(service, pki.devices["sim-001"].certfile)
        trust(service, pki.devices["sim-001"].certfile)  # once is enough; again changes nothing
        assert service.trusted is not None and len(list(service.trusted.iterdir())) == 1
        device.connect()
        device.disconnect()
        outsider = Device("sim-999", service.url, tls=tls(pki.outsider, pki.ca), username="sim-999")
        with pytest.raises(ConnectionRefusedError, match="did not accept the client certificate"):
            outsider.connect()


def test_the_trust_folder_names_certificates_by_openssls_subject_hash(pki: Pki) -> None:
    """The name OpenSSL looks a certificate up by in a capath folder."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to compare with")
    for certificate in (*pki.devices.values(), pki.outsider):
        expected = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(certificate.certfile)],
                                  capture_output=True, text=True, check=True).stdout.strip()
        assert subject_hash(x509.load_pem_x509_certificate(certificate.certfile.read_bytes())) == expected
