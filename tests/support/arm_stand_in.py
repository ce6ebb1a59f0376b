"""A local stand-in for Azure Resource Manager, as its documents describe it, for the
tools that call it (the postdeploy hook, ``tools.simulate.arm_clients``).

"Track asynchronous Azure operations": a PUT answers ``201`` with an
``Azure-AsyncOperation`` URL (or ``200`` with the resource when ``synchronous``),
the operation answers ``{"status": "InProgress"}`` once and then the attempt's
outcome; a DELETE answers ``202`` with a ``Location`` that answers ``202`` once and
then ``200``. "Throttling Resource Manager requests": ``429`` with ``Retry-After``.
A request without the bearer token gets ``401``; a body that breaks the resource
type's contract (``contract``) gets ``400`` with ARM's error shape.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .bicep_check import check_source
from .bicep_types import TypeIndex

Contract = Callable[[str, Any], list[str]]  # (path, body) -> what breaks the contract


@dataclass
class ArmStandIn:
    token: str
    outcomes: list[str] = field(default_factory=list)  # each PUT's operation outcome; past the list, Succeeded
    refuse: bool = False  # every PUT answers 403
    synchronous: bool = False  # PUT answers 200 with the outcome
    throttle: int = 0  # the first ``throttle`` PUTs answer 429
    contract: Contract | None = None
    api_version: str = "2025-02-15"
    poll_after: str = "0"  # Retry-After of an operation still under way (ARM's hint when to look again)
    puts: list[dict[str, Any]] = field(default_factory=list)  # every PUT body past the token and throttling
    requests: list[str] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)  # path: body, once its operation succeeded
    base: str = ""
    on_stored: Callable[[str, Any], None] | None = None  # (path, body) of each PUT that succeeded, as it ends

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._operations: dict[str, tuple[str, str, Any, str]] = {}  # id: (method, path, body, outcome)

    def answer(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        with self._lock:  # the server answers on a thread per request
            return self._answer(method, path, headers, body)

    def _answer(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        self.requests.append(f"{method} {path}")
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {}, {"error": {"code": "AuthenticationFailed", "message": "no bearer token"}}
        parts = urlsplit(path)
        if method in ("PUT", "DELETE"):
            assert parse_qs(parts.query) == {"api-version": [self.api_version]}, path
        if method == "PUT":
            assert headers.get("Content-Type", "").startswith("application/json")
            if self.throttle:
                self.throttle -= 1
                return 429, {"Retry-After": "1"}, {"error": {"code": "TooManyRequests",
                                                             "message": "The request is throttled"}}
            document = json.loads(body)
            self.puts.append(document)
            if self.refuse:
                return 403, {}, {"error": {"code": "AuthorizationFailed",
                                           "message": "The client does not have authorization to perform action"}}
            broken = self.contract(parts.path, document) if self.contract else []
            if broken:
                return 400, {}, {"error": {"code": "InvalidRequestContent", "message": "; ".join(broken)}}
            attempt = len(self.puts)
            outcome = self.outcomes[attempt - 1] if attempt <= len(self.outcomes) else "Succeeded"
            if self.synchronous:
                self._end("PUT", parts.path, document, outcome)
                return 200, {}, {"properties": {"provisioningState": outcome}}
            self._operations[str(attempt)] = ("PUT", parts.path, document, outcome)
            operation = f"{self.base}/operations/{attempt}?api-version={self.api_version}"
            return 201, {"Azure-AsyncOperation": operation, "Retry-After": self.poll_after}, {
                "properties": {"provisioningState": "Creating"}}
        if method == "DELETE":
            if parts.path not in self.resources:
                return 204, {}, None
            key = f"delete-{len(self._operations) + 1}"
            self._operations[key] = ("DELETE", parts.path, None, "Succeeded")
            location = f"{self.base}/operations/{key}?api-version={self.api_version}"
            return 202, {"Location": location, "Retry-After": self.poll_after}, None
        if method == "GET" and parts.path.startswith("/operations/"):
            key = parts.path.rsplit("/", 1)[1]
            kind, target, document, outcome = self._operations[key]
            polls = sum(1 for r in self.requests if r.startswith(f"GET /operations/{key}?"))
            if kind == "DELETE":
                if polls == 1:
                    return 202, {"Location": f"{self.base}{path}", "Retry-After": self.poll_after}, None
                self._end(kind, target, document, outcome)
                return 200, {}, None
            if polls == 1:
                return 200, {"Retry-After": self.poll_after}, {"status": "InProgress"}
            self._end(kind, target, document, outcome)
            error = {"error": {"code": "Endpoint validation", "message": "The function client_lifecycle was not found"}}
            return 200, {}, {"status": outcome} | (error if outcome == "Failed" else {})
        return 404, {}, {"error": {"code": "NotFound", "message": path}}

    def _end(self, method: str, path: str, document: Any, outcome: str) -> None:
        if outcome != "Succeeded":
            return
        if method == "PUT":
            self.resources[path] = document
            if self.on_stored is not None:  # before the operation answers Succeeded
                self.on_stored(path, document)
        else:
            self.resources.pop(path, None)


@contextlib.contextmanager
def serve(stand_in: ArmStandIn) -> Iterator[ArmStandIn]:
    """``stand_in`` answering HTTP on a free loopback port (its ``base``) for the block."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, headers, body = stand_in.answer(self.command, self.path, self.headers, self.rfile.read(length))
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stand_in.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- Event Grid namespace clients

CLIENT_PATH = re.compile(r"/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)/providers/"
                         r"Microsoft\.EventGrid/namespaces/(?P<namespace>[^/]+)/(?P<kind>clients|caCertificates)/"
                         r"(?P<name>[^/]+)")
CA_NAME = re.compile(r"[a-zA-Z0-9-]{3,50}")  # bicep-types: namespaces/caCertificates name
CLIENT_NAME = re.compile(r"[-a-zA-Z0-9:._]{1,128}")  # bicep-types: namespaces/clients name
SHA256_HEX = re.compile(r"[0-9A-Fa-f]{64}")


def client_contract(index: TypeIndex | None) -> Contract:
    """What Microsoft.EventGrid/namespaces/clients@2025-02-15 allows in a PUT: the
    name's pattern, the body against the type definition (when ``index``), and the
    rules its descriptions state: attribute values int, bool, string or string[];
    ``allowedThumbprints`` required with ``ThumbprintMatch``; here, as docs/deploy.md
    registers them, SHA-256 thumbprints."""

    def type_errors(kind: str, name: str, body: dict[str, Any]) -> list[str]:
        """What the namespace child's resource type refuses in ``body`` (none without the types)."""
        if index is None:
            return []
        source = (f"resource c 'Microsoft.EventGrid/namespaces/{kind}@2025-02-15' = "
                  f"{bicep_literal({'name': name} | body)}\n")
        return [finding.message for finding in check_source(source, index)]

    def broken(path: str, body: Any) -> list[str]:
        match = CLIENT_PATH.fullmatch(path)
        if match is None:
            return [f"{path} is not a namespace client"]
        name = unquote(match["name"])
        if match["kind"] == "caCertificates":
            return ca_certificate_broken(name, body)
        errors = [] if CLIENT_NAME.fullmatch(name) else [f"name {name!r} does not match ^[-a-zA-Z0-9:._]*$ (1-128)"]
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            return [*errors, "the body has no properties object"]
        errors += type_errors("clients", name, body)
        properties = body["properties"]
        for key, value in (properties.get("attributes") or {}).items():
            if not (isinstance(value, (int, bool, str))
                    or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
                errors.append(f"attribute {key!r}: {value!r} is not an int, bool, string or string[]")
        authentication = properties.get("clientCertificateAuthentication") or {}
        if authentication.get("validationScheme") == "ThumbprintMatch":
            thumbprints = authentication.get("allowedThumbprints")
            if not thumbprints:
                errors.append("allowedThumbprints is required with ThumbprintMatch")
            errors += [f"{t!r} is not a SHA-256 thumbprint" for t in thumbprints or []
                       if not (isinstance(t, str) and SHA256_HEX.fullmatch(t))]
        return errors

    def ca_certificate_broken(name: str, body: Any) -> list[str]:
        """A CA certificate: the name's pattern, the body's type, and a certificate that
        can sign clients' certificates (base64 of its DER; the namespace validates
        clients by the chain to it)."""
        errors = [] if CA_NAME.fullmatch(name) else [f"name {name!r} does not match ^[a-zA-Z0-9-]*$ (3-50)"]
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            return [*errors, "the body has no properties object"]
        errors += type_errors("caCertificates", name, body)
        try:
            from cryptography import x509

            certificate = x509.load_der_x509_certificate(base64.b64decode(body["properties"]["encodedCertificate"],
                                                                          validate=True))
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
            if not constraints.ca:
                errors.append("encodedCertificate is not a CA certificate (BasicConstraints ca=false)")
        except (KeyError, TypeError, ValueError) as exc:
            errors.append(f"encodedCertificate is not a base64 DER certificate: {exc}")
        except x509.ExtensionNotFound:
            errors.append("encodedCertificate has no BasicConstraints: not a CA certificate")
        return errors

    return broken


def bicep_literal(value: Any, indent: str = "") -> str:
    """A JSON value written as a Bicep literal, for :func:`check_source`."""
    inner = indent + "  "
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = [f"{inner}{bicep_literal(str(k))}: {bicep_literal(v, inner)}" for k, v in value.items()]
        return "{\n" + "\n".join(lines) + f"\n{indent}}}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + "\n".join(f"{inner}{bicep_literal(v, inner)}" for v in value) + f"\n{indent}]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return json.dumps(value)
    escaped = str(value).replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("${", "\\${")
    return f"'{escaped}'"
