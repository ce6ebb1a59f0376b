"""``docs/api.http`` stays true to the API: every operation of the OpenAPI document
has a request there, each request is one of them, with the function key where the
route needs one, only query parameters the route takes, and a body its handler
accepts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from shared.commands.models import CommandRequest
from shared.meta.openapi import OPERATIONS
from shared.platform.operations import Operation

HTTP_FILE = Path(__file__).resolve().parents[1] / "docs" / "api.http"


@dataclass(frozen=True)
class Request:
    title: str
    method: str
    path: str  # under the base URL, variables substituted, without the query
    query: tuple[str, ...]  # parameter names
    headers: dict[str, str]  # lower-case names
    body: str


def parse(text: str) -> list[Request]:
    """The requests of a REST Client / JetBrains HTTP file, its ``@name = value``
    variables substituted."""
    variables = dict(re.findall(r"^@(\w+) = (.*)$", text, re.MULTILINE))

    def substitute(value: str) -> str:
        return re.sub(r"\{\{(\w+)\}\}", lambda m: variables.get(m[1], m[0]), value)

    requests = []
    for block in re.split(r"^###", text, flags=re.MULTILINE)[1:]:
        title, *lines = block.splitlines()
        lines = [line for line in lines if not line.startswith(("#", "//"))]
        while lines and not lines[0].strip():
            lines.pop(0)
        method, url = lines[0].split(" ", 1)
        blank = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
        headers = {name.strip().lower(): substitute(value.strip())
                   for name, value in (line.split(":", 1) for line in lines[1:blank])}
        address, _, query = substitute(url).partition("?")
        base = variables["baseUrl"]
        assert address.startswith(base), f"{title.strip()}: {url} is not under {{{{baseUrl}}}}"
        requests.append(Request(title.strip(), method, address[len(base):], tuple(
            part.split("=", 1)[0] for part in query.split("&") if part), headers, "\n".join(lines[blank:]).strip()))
    return requests


def operation_of(request: Request) -> Operation:
    for op in OPERATIONS:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(op.path)) + "$"
        if op.method.upper() == request.method and re.match(pattern, request.path):
            return op
    raise AssertionError(f"{request.title}: {request.method} {request.path} is no operation of the API")


def test_every_operation_has_a_request_and_every_request_is_an_operation() -> None:
    requests = parse(HTTP_FILE.read_text(encoding="utf-8"))
    covered = {operation_of(request).operation_id for request in requests}
    assert covered == {op.operation_id for op in OPERATIONS}


def test_each_request_sends_the_key_the_parameters_and_a_body_its_route_takes() -> None:
    requests = parse(HTTP_FILE.read_text(encoding="utf-8"))
    for request in requests:
        op = operation_of(request)
        assert ("x-functions-key" in request.headers) == op.secured, request.title
        assert set(request.query) <= {p.name for p in op.params if p.where == "query"}, request.title
        if op.request is None:
            assert not request.body, request.title
            continue
        assert request.headers.get("content-type") == "application/json", request.title
        op.request.model_validate(orjson.loads(request.body))  # as the handler validates it
    keyed = [operation_of(r).operation_id for r in requests if "idempotency-key" in r.headers]
    assert keyed and set(keyed) == {"send_command"}, "the Idempotency-Key is shown, where it applies"


def test_the_checks_see_what_a_broken_file_gets_wrong() -> None:
    text = ("@baseUrl = http://localhost:7071/api\n@key = k\n"
            "### a\n# @name a\nPOST {{baseUrl}}/devices/x/commands\nContent-Type: application/json\n\n"
            '{"name": "bad name"}\n'
            "### b\nGET {{baseUrl}}/nowhere\nx-functions-key: {{key}}\n")
    first, second = parse(text)
    assert (first.method, first.path, first.headers) == ("POST", "/devices/x/commands",
                                                         {"content-type": "application/json"})
    assert operation_of(first).secured and "x-functions-key" not in first.headers, "a key missing is seen"
    assert second.headers == {"x-functions-key": "k"}
    with pytest.raises(ValidationError, match="name"):
        CommandRequest.model_validate(orjson.loads(first.body))
    with pytest.raises(AssertionError, match="/nowhere is no operation"):
        operation_of(second)
