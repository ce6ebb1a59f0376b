"""What azd does with ``infra/main.parameters.json``, as its source says, so that the
offline checks can put any environment value through it.

Azure/azure-dev, ``cli/azd/pkg/infra/provisioning/bicep/bicep_provider.go``,
``loadParameters``: for each parameter of the file, a parameter that is not an
object or array is written back to JSON text (``json.Marshal(param)``), every
``${VAR}`` in that text is replaced by the raw value of the environment variable
(``envsubst.Eval``, no escaping), and the result is parsed again; a parse error is
"error unmarshalling Bicep template parameters". A string left empty by a variable
that is not set is left out, so the template's default applies. drone/envsubst:
``${VAR=default}`` gives ``default`` when the value is empty or unset.
``armParameterFileValue``: a string given to a bool or int parameter is converted
when ``strconv.ParseBool`` / ``strconv.ParseInt`` accept it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["AZD_VARIABLES", "REFERENCE", "ParametersError", "load_parameters", "variables"]

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:=([^}]*))?\}")

# Variables azd itself sets: the environment's name (azd allows letters, digits, -, (, ), _
# and .), the region's name, and the signed-in principal's object id and kind
# (resolved by azd from the sign-in, not from the environment).
AZD_VARIABLES = frozenset({"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID", "AZURE_PRINCIPAL_TYPE"})

_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


class ParametersError(ValueError):
    """azd: "error unmarshalling Bicep template parameters"."""


def variables(parameters: Mapping[str, Any]) -> dict[str, list[str]]:
    """Parameter name -> the environment variables its value refers to."""
    return {name: [m.group(1) for m in REFERENCE.finditer(json.dumps(param))] for name, param in parameters.items()}


def load_parameters(
    parameters: Mapping[str, Any], env: Mapping[str, str], types: Mapping[str, str]
) -> dict[str, Any]:
    """The value azd passes to the deployment for each parameter it sets (``types``: Bicep type by name)."""
    resolved: dict[str, Any] = {}
    for name, param in parameters.items():
        unset = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal unset
            value = env.get(match.group(1))
            if value is None:
                unset = True
            return value or (match.group(2) or "")

        kind = types.get(name, "")
        if kind in {"array", "object"} and isinstance(param.get("value"), str):
            text = REFERENCE.sub(substitute, param["value"])
            if text == "" and unset:
                continue
            try:
                resolved[name] = json.loads(text)
            except ValueError as exc:
                raise ParametersError(f"substituting parameter {name!r}: value is not valid JSON") from exc
            continue
        text = REFERENCE.sub(substitute, json.dumps(param, separators=(",", ":")))
        try:
            value = json.loads(text).get("value")
        except ValueError as exc:
            raise ParametersError(f"error unmarshalling Bicep template parameters ({name}): {exc}") from exc
        if value == "" and unset:
            continue
        if kind == "bool" and isinstance(value, str) and value in _BOOLS:
            value = _BOOLS[value]
        elif kind == "int" and isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value):
            value = int(value)
        resolved[name] = value
    return resolved
