"""Every HTTP response a test receives is checked against the OpenAPI document the
app serves: the operation (found by function name, its ``operationId``) documents
the status, the content type is the documented one, required headers are present,
and the body validates against the schema (JSON Schema 2020-12, formats asserted).
A mismatch fails the test that received the response, where it received it."""

from __future__ import annotations

import functools
from typing import Any

import azure.functions as func
import jsonschema
import orjson
from jsonschema import Draft202012Validator


class ResponseValidator:
    def __init__(self, document: dict[str, Any]) -> None:
        self.responses: dict[str, dict[str, Any]] = {
            operation["operationId"]: dict(operation["responses"])
            for item in document["paths"].values() for operation in item.values()
        }
        components = document["components"]
        self._validators = {
            (operation_id, status, content_type): Draft202012Validator(
                {**media["schema"], "components": components}, format_checker=Draft202012Validator.FORMAT_CHECKER)
            for operation_id, responses in self.responses.items()
            for status, response in responses.items()
            for content_type, media in response.get("content", {}).items()
        }

    def __call__(self, function_name: str, response: func.HttpResponse) -> None:
        where = f"{function_name} answered {response.status_code}"
        if function_name not in self.responses:
            raise AssertionError(f"{function_name} is no operation of the OpenAPI document")
        documented = self.responses[function_name].get(str(response.status_code))
        if documented is None:
            raise AssertionError(f"{where}, a status the OpenAPI document does not list for it")
        for name, header in documented.get("headers", {}).items():
            if header.get("required") and name not in response.headers:
                raise AssertionError(f"{where} without the documented header {name}")
        content = documented.get("content")
        if content is None:
            return  # documented without a body (the host's 401)
        if response.mimetype not in content:
            raise AssertionError(f"{where} as {response.mimetype}, documented as {', '.join(content)}")
        try:
            body = orjson.loads(response.get_body())
        except orjson.JSONDecodeError as exc:
            raise AssertionError(f"{where} with a body that is not JSON: {exc}") from None
        validator = self._validators[function_name, str(response.status_code), response.mimetype]
        error = jsonschema.exceptions.best_match(validator.iter_errors(body))
        if error is not None:
            path = "/".join(str(p) for p in error.absolute_path) or "(the body)"
            raise AssertionError(f"{where} with a body the OpenAPI document does not allow, "
                                 f"at {path}: {error.message}")


@functools.cache
def response_validator() -> ResponseValidator:
    from shared.meta.openapi import openapi_document

    return ResponseValidator(openapi_document())


def check_response(function_name: str, response: func.HttpResponse) -> None:
    """The check :data:`standins.invoke.RESPONSE_CHECKS` runs for the test session."""
    response_validator()(function_name, response)
