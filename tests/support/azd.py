"""An azd environment's values, as the simulator reads them, and what azd passes to the
deployment of ``main.bicep`` (the model of its parameter substitution in
:mod:`tests.support.azd_model`), for the tests of ``azd up`` in ``tests/infra``."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson

from tests.support.azd_model import load_parameters
from tests.support.infra import INFRA, MAIN_BICEP, ROOT
from tests.support.infra import bicep as template

PARAMETERS_JSON = INFRA / "main.parameters.json"
DEPLOY_MD = ROOT / "docs" / "deploy.md"

# Quotes, backslashes, newlines, a tab, non-ASCII, and what looks like a substitution.
HOSTILE = '[{"name": "quote\\"d", "path": "C:\\\\x", "note": "line one\nline two\tend", "é": "${HOME}"}]'


def parameters_file() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PARAMETERS_JSON.read_text(encoding="utf-8"))
    return dict(data["parameters"])


def parameter_types() -> dict[str, str]:
    return {name: param.type_text for name, param in template(MAIN_BICEP).params.items()}


def azd_values(env: dict[str, str]) -> dict[str, Any]:
    """The parameter values azd passes to the deployment of main.bicep for ``env``."""
    base = {"AZURE_ENV_NAME": "dev", "AZURE_LOCATION": "swedencentral"}
    return load_parameters(parameters_file(), base | env, parameter_types())


def decorators(name: str) -> str:
    """The decorators written above parameter ``name`` of main.bicep."""
    for node in template(MAIN_BICEP).root.named_children:
        if node.type == "parameter_declaration" and (node.named_children[0].text or b"").decode() == name:
            previous = node.prev_named_sibling
            return (previous.text or b"").decode() if previous is not None and previous.type == "decorators" else ""
    raise KeyError(name)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def azd_env(project: Path, values: dict[str, str], *, name: str = "dev", default: bool = True) -> Path:
    """A temporary azd project: ``.azure/{name}/.env`` (quoted as azd writes) and config.json."""
    (project / ".azure" / name).mkdir(parents=True, exist_ok=True)
    (project / ".azure" / name / ".env").write_text(
        "".join(f'{k}="{v}"\n' for k, v in values.items()))
    if default:
        (project / ".azure" / "config.json").write_text(orjson.dumps({"version": 1, "defaultEnvironment": name})
                                                        .decode())
    return project
