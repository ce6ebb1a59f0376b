"""Device certificates and their Event Grid clients (``tools.simulate.device_certs``,
``tools.simulate.arm_clients``) and their command line (``tools.simulate.certs``).

Certificates are made and read back with ``cryptography`` and checked against
``openssl`` where it is installed. Registration talks to the local stand-in for Azure
Resource Manager (:mod:`tests.support.arm_stand_in`), which checks every request against
the contract of Microsoft.EventGrid/namespaces/clients@2025-02-15 (the bicep type
definition when ``BICEP_TYPES_DIR`` is set, as ``make test`` sets it); Entra ID is a
stub credential whose token the stand-in requires.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import pytest
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.conftest import Runner
from tests.support.arm_stand_in import ArmStandIn, client_contract, serve
from tests.support.certs import bicep_types
from tools.simulate import arm_clients, certs, device_certs
from tools.simulate.arm_clients import ARM_SCOPE, CA_CERTIFICATE_NAME, ArmError, register_devices, unregister_devices
from tools.simulate.device_certs import DeviceCertificate, ensure_ca, ensure_certificates
from tools.simulate.target import TargetError, azd_environment

TOKEN = "eyJ0eXAiOiJKV1Qi.stub.entra-token"
class Where(TypedDict):
    subscription_id: str
    resource_group: str
    namespace: str


WHERE = Where(subscription_id="00000000-0000-0000-0000-000000000001", resource_group="rg-dev", namespace="evgns-x")
CLIENTS = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-dev/providers/"
           "Microsoft.EventGrid/namespaces/evgns-x/clients/")


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def openssl_thumbprint(path: Path) -> str:
    """What docs/deploy.md has you run, or the SHA-256 of the DER when there is no openssl."""
    if shutil.which("openssl") is None:
        return hashlib.sha256(load(path).public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    out = subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1].replace(":", "")


# --------------------------------------------------------------------------- certificates


def test_each_device_gets_a_self_signed_p256_certificate_with_its_id_as_cn(tmp_path: Path) -> None:
    made = ensure_certificates(["sim-000", "sim-001"], tmp_path / "certs")
    assert [c.device_id for c in made] == ["sim-000", "sim-001"]
    for item in made:
        certificate = load(item.certfile)
        assert certificate.subject.rfc4514_string() == f"CN={item.device_id}"
        assert certificate.issuer == certificate.subject
        public = certificate.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.curve.name == "secp256r1"
        certificate.verify_directly_issued_by(certificate)  # self-signed: its own key signed it
        lifetime = certificate.not_valid_after_utc - datetime.now(UTC)
        assert timedelta(days=360) < lifetime <= timedelta(days=366)
        key = serialization.load_pem_private_key(item.keyfile.read_bytes(), password=None)
        assert key.public_key() == public
        assert item.keyfile.stat().st_mode & 0o777 == 0o600
        assert item.thumbprint == openssl_thumbprint(item.certfile)
        assert len(item.thumbprint) == 64 and item.thumbprint == item.thumbprint.upper()
    assert made[0].thumbprint != made[1].thumbprint


def test_certificates_already_there_are_kept_so_the_registered_thumbprint_stays_right(tmp_path: Path) -> None:
    first = ensure_certificates(["sim-000", "sim-001"], tmp_path)
    files = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    again = ensure_certificates(["sim-000", "sim-001", "sim-002"], tmp_path)
    assert again[:2] == first
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.name in files} == files
    assert again[2].thumbprint not in {c.thumbprint for c in first}


def write_certificate(item: DeviceCertificate, *, common_name: str, not_after: datetime) -> None:
    """A certificate for ``item``'s key, with the given CN and end."""
    key = serialization.load_pem_private_key(item.keyfile.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_after - timedelta(days=400)).not_valid_after(not_after)
                   .sign(key, hashes.SHA256()))
    item.certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def test_a_pair_that_is_expired_ending_corrupt_missing_mismatched_or_someone_elses_is_made_anew(
    tmp_path: Path,
) -> None:
    ids = ["expired", "ending", "corrupt-cert", "corrupt-key", "no-key", "no-cert", "mismatched", "other-cn", "good"]
    before = {c.device_id: c for c in ensure_certificates(ids, tmp_path)}
    now = datetime.now(UTC)
    write_certificate(before["expired"], common_name="expired", not_after=now - timedelta(days=1))
    write_certificate(before["ending"], common_name="ending", not_after=now + timedelta(days=2))
    before["corrupt-cert"].certfile.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    before["corrupt-key"].keyfile.write_bytes(b"\x00garbage")
    before["no-key"].keyfile.unlink()
    before["no-cert"].certfile.unlink()
    shutil.copyfile(before["good"].keyfile, before["mismatched"].keyfile)
    write_certificate(before["other-cn"], common_name="good", not_after=now + timedelta(days=100))
    changed = {c.device_id: c for c in ensure_certificates(ids, tmp_path)}
    assert changed["good"] == before["good"]
    for device_id in ids[:-1]:
        item = changed[device_id]
        assert item.thumbprint != before[device_id].thumbprint, device_id
        assert load(item.certfile).subject.rfc4514_string() == f"CN={device_id}"
        key = serialization.load_pem_private_key(item.keyfile.read_bytes(), password=None)
        assert key.public_key() == load(item.certfile).public_key()
        assert item.thumbprint == openssl_thumbprint(item.certfile)


def test_a_key_left_readable_by_others_is_kept_but_closed(tmp_path: Path) -> None:
    (item,) = ensure_certificates(["sim-000"], tmp_path)
    item.keyfile.chmod(0o644)
    assert ensure_certificates(["sim-000"], tmp_path) == [item]
    assert item.keyfile.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("device_id", ["", "sim 000", "x" * 129, "../etc", "caméra", "sim-000\n", "a/b"])
def test_a_device_id_event_grid_would_not_take_is_refused_before_anything_is_written(
    tmp_path: Path, device_id: str
) -> None:
    with pytest.raises(ValueError, match="is not an Event Grid client name: 1-128 letters, digits"):
        ensure_certificates(["sim-000", device_id], tmp_path / "certs")
    assert not (tmp_path / "certs").exists()


@pytest.mark.parametrize("device_id", [".", ".."])
def test_a_device_id_a_url_would_read_as_a_folder_is_refused(tmp_path: Path, device_id: str) -> None:
    """``clients/..`` would be the namespace itself: a DELETE there must never be sent."""
    with pytest.raises(ValueError, match="cannot name a client in a URL path"):
        ensure_certificates([device_id], tmp_path)
    with pytest.raises(ValueError, match="cannot name a client in a URL path"):
        arm_clients.client_url("http://127.0.0.1:9", "s", "g", "n", device_id)


def test_every_name_event_grid_allows_is_taken_up_to_the_64_characters_a_common_name_holds(
    tmp_path: Path,
) -> None:
    ids = ["a", "x" * 64, "A-b:c.d_e", "00:1A:2B:3C:4D:5E"]
    assert [c.device_id for c in ensure_certificates(ids, tmp_path)] == ids
    with pytest.raises(ValueError, match="is longer than 64 characters, the most a certificate's common name holds"):
        ensure_certificates(["x" * 65], tmp_path)


def test_the_tool_names_devices_as_the_simulator_does() -> None:
    assert device_certs.device_ids(3) == ["sim-000", "sim-001", "sim-002"]
    assert device_certs.device_ids(2, "cam-") == ["cam-000", "cam-001"]
    with pytest.raises(ValueError, match="not an Event Grid client name"):
        device_certs.device_ids(1, "sim ")


# --------------------------------------------------------------------------- registration over ARM


class StubCredential:
    """Entra ID's part: a token for whatever scope is asked; the scopes are kept."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                        enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> StubCredential:
        return self

    async def __aexit__(self, *args: Any) -> None:
        pass


@pytest.fixture
def arm() -> Iterator[ArmStandIn]:
    with serve(ArmStandIn(TOKEN, contract=client_contract(bicep_types()))) as stand_in:
        yield stand_in


def test_devices_are_registered_as_event_grid_clients_with_their_thumbprints(
    tmp_path: Path, arm: ArmStandIn, run: Runner[Any]
) -> None:
    """One 429 first (retried after its Retry-After); each PUT answered 201 and its
    operation followed from InProgress to Succeeded."""
    arm.throttle = 1
    made = ensure_certificates(["sim-000", "sim-001", "sim-002"], tmp_path)
    attributes = {"sim-000": {"type": "camera", "group": "line-a"}, "sim-001": {"type": "camera"}}
    credential = StubCredential()
    run(register_devices(made, attributes=attributes, credential=credential, arm_url=arm.base, **WHERE))
    assert arm.resources == {
        CLIENTS + c.device_id: {"properties": {
            "authenticationName": c.device_id,
            "state": "Enabled",
            "attributes": {"role": "edge-device", **attributes.get(c.device_id, {})},
            "clientCertificateAuthentication": {"validationScheme": "ThumbprintMatch",
                                                "allowedThumbprints": [c.thumbprint]},
        }} for c in made}
    puts = [r for r in arm.requests if r.startswith("PUT ")]
    assert len(puts) == 4  # three devices, one of them twice after the 429
    assert all(r.endswith("?api-version=2025-02-15") for r in puts)
    polls = [r for r in arm.requests if r.startswith("GET /operations/")]
    assert len(polls) == 6  # InProgress, then Succeeded, for each
    assert set(credential.scopes) == {(ARM_SCOPE,)}


@pytest.mark.skipif(bicep_types() is None, reason="BICEP_TYPES_DIR is not set (make test sets it)")
def test_the_stand_in_refuses_a_client_body_the_type_definition_does_not_allow() -> None:
    broken = client_contract(bicep_types())
    path = CLIENTS + "sim-000"
    good = {"properties": {"authenticationName": "sim-000", "state": "Enabled", "attributes": {"role": "edge-device"},
                           "clientCertificateAuthentication": {"validationScheme": "ThumbprintMatch",
                                                               "allowedThumbprints": ["A" * 64]}}}
    assert broken(path, good) == []
    wrong_kind = json.loads(json.dumps(good))
    wrong_kind["properties"]["state"] = 5
    assert any("properties.state: 5 is not an allowed value" in e for e in broken(path, wrong_kind))
    misnamed = json.loads(json.dumps(good))
    misnamed["properties"]["clientCertificateAuthentication"]["thumbprints"] = ["A" * 64]
    assert any("thumbprints: unknown property" in e for e in broken(path, misnamed))
    read_only = json.loads(json.dumps(good))
    read_only["properties"]["provisioningState"] = "Succeeded"
    assert any("provisioningState: property is read-only" in e for e in broken(path, read_only))


def test_the_stand_in_refuses_what_the_client_contract_says_is_wrong() -> None:
    broken = client_contract(None)
    body: dict[str, Any] = {"properties": {"attributes": {"tags": [1, 2]},
                                           "clientCertificateAuthentication": {"validationScheme": "ThumbprintMatch"}}}
    assert broken(CLIENTS + "sim 000", body) == [
        "name 'sim 000' does not match ^[-a-zA-Z0-9:._]*$ (1-128)",
        "attribute 'tags': [1, 2] is not an int, bool, string or string[]",
        "allowedThumbprints is required with ThumbprintMatch",
    ]
    assert broken("/subscriptions/x/resourceGroups/y/providers/Microsoft.EventGrid/namespaces/z", body) != []


def test_a_device_azure_refuses_is_named_with_azures_reason_and_the_others_are_registered(
    tmp_path: Path, arm: ArmStandIn, run: Runner[Any]
) -> None:
    good, other = ensure_certificates(["sim-000", "sim-001"], tmp_path)
    sha1 = hashlib.sha1(b"a certificate", usedforsecurity=False).hexdigest().upper()  # what openssl's default gives
    wrong = DeviceCertificate("sim-001", other.certfile, other.keyfile, sha1)
    with pytest.raises(ArmError) as raised:
        run(register_devices([good, wrong], attributes={}, credential=StubCredential(), arm_url=arm.base, **WHERE))
    assert str(raised.value) == (
        "1 of 2 devices failed:\n"
        f"sim-001: Azure Resource Manager answered 400: InvalidRequestContent: '{sha1}' is not a SHA-256 thumbprint")
    assert list(arm.resources) == [CLIENTS + "sim-000"]


def test_an_operation_that_fails_names_the_device(tmp_path: Path, arm: ArmStandIn, run: Runner[Any]) -> None:
    arm.outcomes = ["Failed"]
    made = ensure_certificates(["sim-000"], tmp_path)
    with pytest.raises(ArmError, match="sim-000: the operation ended Failed: Endpoint validation"):
        run(register_devices(made, attributes={}, credential=StubCredential(), arm_url=arm.base, **WHERE))
    assert arm.resources == {}


def test_a_token_azure_does_not_take_is_not_retried(tmp_path: Path, arm: ArmStandIn, run: Runner[Any]) -> None:
    made = ensure_certificates(["sim-000"], tmp_path)
    with pytest.raises(ArmError, match="sim-000: Azure Resource Manager answered 401: AuthenticationFailed"):
        run(register_devices(made, attributes={}, credential=StubCredential("expired"), arm_url=arm.base, **WHERE))
    assert len(arm.requests) == 1


def test_throttling_that_does_not_end_gives_up_after_a_bounded_number_of_tries(
    tmp_path: Path, arm: ArmStandIn, run: Runner[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arm_clients, "ATTEMPTS", 2)
    arm.throttle = 100
    made = ensure_certificates(["sim-000"], tmp_path)
    with pytest.raises(ArmError, match=r"sim-000: Azure Resource Manager answered 429: TooManyRequests: .*, 2 times"):
        run(register_devices(made, attributes={}, credential=StubCredential(), arm_url=arm.base, **WHERE))
    assert len(arm.requests) == 2


def test_unregistering_deletes_each_client_and_one_already_gone_is_no_error(
    tmp_path: Path, arm: ArmStandIn, run: Runner[Any]
) -> None:
    made = ensure_certificates(["sim-000", "sim-001"], tmp_path)
    run(register_devices(made, attributes={}, credential=StubCredential(), arm_url=arm.base, **WHERE))
    run(unregister_devices(["sim-000", "sim-001", "sim-002"], credential=StubCredential(), arm_url=arm.base, **WHERE))
    assert arm.resources == {}
    deletes = sorted(r for r in arm.requests if r.startswith("DELETE "))  # a few at a time, in any order
    assert deletes == [f"DELETE {CLIENTS}{d}?api-version=2025-02-15" for d in ("sim-000", "sim-001", "sim-002")]


@pytest.mark.parametrize(("attributes", "message"), [
    ({"role": "admin"}, "attribute 'role' is the tool's"),
    ({"group": "line a"}, "group 'line a' is not 1-64 of letters"),
])
def test_attributes_that_would_break_the_permissions_are_refused_before_any_request(
    tmp_path: Path, arm: ArmStandIn, run: Runner[Any], attributes: dict[str, str], message: str
) -> None:
    made = ensure_certificates(["sim-000"], tmp_path)
    with pytest.raises(ValueError, match=message):
        run(register_devices(made, attributes={"sim-000": attributes}, credential=StubCredential(),
                             arm_url=arm.base, **WHERE))
    assert arm.requests == []


def test_a_resource_group_that_is_not_a_name_is_refused(tmp_path: Path, run: Runner[Any]) -> None:
    made = ensure_certificates(["sim-000"], tmp_path)
    with pytest.raises(ValueError, match=re.escape("resource group 'rg/../x' is not a name")):
        run(register_devices(made, attributes={}, credential=StubCredential(), arm_url="http://127.0.0.1:9",
                             **(WHERE | {"resource_group": "rg/../x"})))


def test_arm_unreachable_is_an_error_naming_the_device(
    tmp_path: Path, run: Runner[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arm_clients, "ATTEMPTS", 1)
    made = ensure_certificates(["sim-000"], tmp_path)
    with pytest.raises(ArmError, match=r"sim-000: PUT http://127\.0\.0\.1:9/subscriptions/.* failed"):
        run(register_devices(made, attributes={}, credential=StubCredential(), arm_url="http://127.0.0.1:9",
                             **WHERE))


# --------------------------------------------------------------------------- the command line


def test_the_azd_environment_is_read_as_azd_writes_it(tmp_path: Path) -> None:
    (tmp_path / ".azure" / "dev").mkdir(parents=True)
    (tmp_path / ".azure" / "prod").mkdir(parents=True)
    (tmp_path / ".azure" / "config.json").write_text('{"version": 1, "defaultEnvironment": "dev"}')
    (tmp_path / ".azure" / "dev" / ".env").write_text(
        'AZURE_ENV_NAME="dev"\nAZURE_RESOURCE_GROUP="rg-dev"\nEVENTGRID_NAMESPACE_NAME="evgns-dev"\n'
        'AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000001"\nALERT_RULES="[{\\"a\\": 1}]"\n')
    (tmp_path / ".azure" / "prod" / ".env").write_text('AZURE_RESOURCE_GROUP="rg-prod"\n')
    assert azd_environment(tmp_path, None, {})[1]["EVENTGRID_NAMESPACE_NAME"] == "evgns-dev"
    assert azd_environment(tmp_path, None, {})[1]["ALERT_RULES"] == '[{"a": 1}]'
    assert azd_environment(tmp_path, "prod", {}) == ("prod", {"AZURE_RESOURCE_GROUP": "rg-prod"})
    assert azd_environment(tmp_path, None, {"AZURE_ENV_NAME": "prod"})[1]["AZURE_RESOURCE_GROUP"] == "rg-prod"
    with pytest.raises(TargetError, match="no azd environment 'missing'"):
        azd_environment(tmp_path, "missing", {})
    assert azd_environment(tmp_path / "nowhere", None, {}) == (None, {})


def test_create_writes_the_simulators_devices_and_prints_their_thumbprints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert certs.main(["create", "--devices", "2", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["sim-000", "sim-001"]
    assert [line.split()[1] for line in lines] == [openssl_thumbprint(tmp_path / f"sim-00{n}.pem") for n in (0, 1)]


@pytest.mark.parametrize(("argv", "message"), [
    (["create", "--devices", "0"], "--devices must be 1 or more"),
    (["create", "--devices", "1", "--dir", "/dev/null/certs"], "error: [Errno 20] Not a directory: '/dev/null/certs'"),
    (["create", "--devices", "2", "--prefix", "sim 1-"], "is not an Event Grid client name"),
    (["register", "--devices", "2", "--env", "no-such-env"], "no azd environment 'no-such-env'"),
    (["register", "--devices", "2"],
     "no --subscription, --resource-group, --namespace given and no azd environment has them"),
    (["delete", "--devices", "2", "--subscription", "s", "--resource-group", "g"], "no --namespace given"),
])
def test_the_command_line_says_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("AZURE_ENV_NAME", raising=False)
    arguments = [argv[0], "--dir", str(tmp_path / "certs"), "--project-dir", str(tmp_path), *argv[1:]]
    assert certs.main(arguments) == 1  # a --dir in argv wins
    assert message in capsys.readouterr().err
    assert not (tmp_path / "certs").exists()


def test_retry_after_is_read_as_seconds_or_a_date_and_capped() -> None:
    in_ten = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert arm_clients._retry_after({"Retry-After": "3"}, default=2) == 3
    assert 8 <= arm_clients._retry_after({"Retry-After": in_ten}, default=2) <= 10
    assert arm_clients._retry_after({"Retry-After": "3600"}, default=2) == arm_clients.MAX_WAIT
    assert arm_clients._retry_after({"Retry-After": "soon"}, default=2) == 2
    assert arm_clients._retry_after({}, default=2) == 2


def test_register_and_delete_from_the_command_line_give_the_simulators_attributes(
    tmp_path: Path, arm: ArmStandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Signed in as DefaultAzureCredential would be (here the stub), the namespace from the flags."""
    import azure.identity.aio

    monkeypatch.setattr(azure.identity.aio, "DefaultAzureCredential", StubCredential)
    monkeypatch.setattr(certs, "ARM_URL", arm.base)
    flags = ["--devices", "3", "--dir", str(tmp_path), "--subscription", WHERE["subscription_id"],
             "--resource-group", WHERE["resource_group"], "--namespace", WHERE["namespace"]]
    assert certs.main(["register", *flags, "--group", "line-x", "--group", "line-y"]) == 0
    assert "3 devices registered in evgns-x" in capsys.readouterr().out
    attributes = {path.rsplit("/", 1)[1]: body["properties"]["attributes"] for path, body in arm.resources.items()}
    assert attributes == {"sim-000": {"role": "edge-device", "type": "camera", "group": "line-x"},
                          "sim-001": {"role": "edge-device", "type": "camera", "group": "line-y"},
                          "sim-002": {"role": "edge-device", "type": "camera", "group": "line-x"}}
    thumbprints = {path.rsplit("/", 1)[1]: body["properties"]["clientCertificateAuthentication"]["allowedThumbprints"]
                   for path, body in arm.resources.items()}
    assert thumbprints == {f"sim-00{n}": [openssl_thumbprint(tmp_path / f"sim-00{n}.pem")] for n in range(3)}
    assert certs.main(["delete", *flags]) == 0
    assert arm.resources == {}


# --- CA-chain authentication (docs/deploy.md, large fleets) --------------------------------


def test_with_a_ca_each_device_certificate_is_issued_by_it_with_the_device_id_as_subject(tmp_path: Path) -> None:
    ca = ensure_ca(tmp_path)
    assert ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    [made] = ensure_certificates(["sim-000"], tmp_path, ca)
    certificate = x509.load_pem_x509_certificate(made.certfile.read_bytes())
    certificate.verify_directly_issued_by(ca.certificate)  # raises unless the CA signed it
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sim-000"
    assert certificate.issuer == ca.certificate.subject
    assert ensure_ca(tmp_path).certificate == ca.certificate, "the CA is kept"
    assert ensure_certificates(["sim-000"], tmp_path, ca) == [made], "and so are the certificates it issued"


def test_a_self_signed_certificate_is_made_anew_when_a_ca_is_asked_for_and_back(tmp_path: Path) -> None:
    [self_signed] = ensure_certificates(["sim-000"], tmp_path)
    ca = ensure_ca(tmp_path)
    [issued] = ensure_certificates(["sim-000"], tmp_path, ca)
    assert issued.thumbprint != self_signed.thumbprint
    [again] = ensure_certificates(["sim-000"], tmp_path)
    assert again.thumbprint != issued.thumbprint, "without the CA, a self-signed one again"


def test_with_a_ca_it_is_registered_on_the_namespace_and_the_clients_by_subject(
    tmp_path: Path, arm: ArmStandIn, run: Runner[Any]
) -> None:
    ca = ensure_ca(tmp_path)
    made = ensure_certificates(["sim-000", "sim-001"], tmp_path, ca)
    run(register_devices(made, attributes={}, credential=StubCredential(), arm_url=arm.base, ca=ca, **WHERE))
    namespace = CLIENTS.rsplit("/clients/", 1)[0]
    stored = arm.resources[f"{namespace}/caCertificates/{CA_CERTIFICATE_NAME}"]
    der = base64.b64decode(stored["properties"]["encodedCertificate"])
    assert x509.load_der_x509_certificate(der) == ca.certificate
    for device in made:
        authentication = arm.resources[CLIENTS + device.device_id]["properties"]["clientCertificateAuthentication"]
        assert authentication == {"validationScheme": "SubjectMatchesAuthenticationName"}
    puts = [r for r in arm.requests if r.startswith("PUT ")]
    assert "caCertificates" in puts[0], "the CA before the clients it vouches for"


def test_the_stand_in_refuses_a_ca_certificate_that_cannot_sign_clients(tmp_path: Path) -> None:
    [device] = ensure_certificates(["sim-000"], tmp_path)  # self-signed, not a CA
    leaf = x509.load_pem_x509_certificate(device.certfile.read_bytes())
    body = {"properties": {"encodedCertificate": base64.b64encode(leaf.public_bytes(Encoding.DER)).decode()}}
    namespace = CLIENTS.rsplit("/clients/", 1)[0]
    broken = client_contract(None)(f"{namespace}/caCertificates/{CA_CERTIFICATE_NAME}", body)
    assert broken == ["encodedCertificate is not a CA certificate (BasicConstraints ca=false)"]
