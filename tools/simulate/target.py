"""What the simulator's Azure mode aims at: the names of a deployment made by ``azd up``,
read from the azd environment's ``.azure/{env}/.env`` (no azd process needed), each
overridable by a flag; and the function key, given or read from Azure Resource Manager."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ARM_URL = "https://management.azure.com"
LIST_KEYS_API_VERSION = "2024-04-01"  # Web Apps - List Host Keys

# (field, azd variable, flag): the flag wins over the azd environment, which wins over
# the process environment (``eval "$(azd env get-values)"`` puts the same names there).
SETTINGS = (
    ("function_url", "AZURE_FUNCTION_URI", "--function-url"),
    ("function_key", "FUNCTION_KEY", "--function-key"),
    ("function_app", "AZURE_FUNCTION_APP_NAME", "--function-app"),
    ("resource_group", "AZURE_RESOURCE_GROUP", "--resource-group"),
    ("subscription_id", "AZURE_SUBSCRIPTION_ID", "--subscription"),
    ("eventhub_namespace", "EVENTHUB_FULLY_QUALIFIED_NAMESPACE", "--eventhub-namespace"),
    ("eventhub_connection_string", "EVENTHUB_CONNECTION_STRING", "--eventhub-connection-string"),
    ("telemetry_hub", "TELEMETRY_HUB_NAME", "--telemetry-hub"),
    ("inference_hub", "INFERENCE_HUB_NAME", "--inference-hub"),
    ("storage_blob_endpoint", "AZURE_STORAGE_BLOB_ENDPOINT", "--storage-blob-endpoint"),
    ("eventgrid_namespace", "EVENTGRID_NAMESPACE_NAME", "--eventgrid-namespace"),
    ("mqtt_hostname", "EVENTGRID_MQTT_HOSTNAME", "--mqtt-hostname"),
    ("offline_command_policy", "OFFLINE_COMMAND_POLICY", "--offline-command-policy"),
)
DEFAULTS = {"telemetry_hub": "telemetry", "inference_hub": "inference", "offline_command_policy": "queue"}


class TargetError(Exception):
    """The deployment cannot be aimed at as given: says what is missing and how to give it."""


@dataclass(frozen=True)
class Target:
    function_url: str
    storage_blob_endpoint: str | None = None
    storage_connection_string: str | None = None  # --storage (Azurite); wins over the endpoint
    function_key: str | None = None
    function_app: str | None = None
    resource_group: str | None = None
    subscription_id: str | None = None
    eventhub_namespace: str | None = None
    eventhub_connection_string: str | None = None
    telemetry_hub: str = "telemetry"
    inference_hub: str = "inference"
    eventgrid_namespace: str | None = None
    mqtt_hostname: str | None = None
    offline_command_policy: str = "queue"
    arm_url: str = ARM_URL
    environment: str | None = None  # the azd environment read, if any
    sources: dict[str, str] = field(default_factory=dict)  # field -> where its value came from

    def hub(self, stream: str) -> str:
        return self.telemetry_hub if stream == "telemetry" else self.inference_hub

    def require(self, *names: str, why: str) -> None:
        """A TargetError naming each of ``names`` (fields) that has no value, with its
        azd variable and its flag."""
        missing = [(variable, flag) for name, variable, flag in SETTINGS if name in names
                   and not getattr(self, name)]
        if missing:
            where = (f"the azd environment {self.environment!r} does not have it" if self.environment else
                     "and no azd environment was found (.azure/ under --project-dir, --env or AZURE_ENV_NAME)")
            raise TargetError(f"{why} needs " + ", ".join(f"{variable} (or {flag})" for variable, flag in missing)
                              + f"; {where}")


def parse_dotenv(text: str) -> dict[str, str]:
    """``KEY=value`` lines as azd writes them (values double-quoted with backslash
    escapes, or single-quoted, or bare); comments and blank lines skipped."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            out, chars = [], iter(value[1:-1])
            for char in chars:
                if char == "\\":
                    escaped = next(chars, "\\")
                    out.append({"n": "\n", "r": "\r"}.get(escaped, escaped))
                else:
                    out.append(char)
            value = "".join(out)
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def azd_environment(project: Path, name: str | None, environ: Mapping[str, str]) -> tuple[str | None, dict[str, str]]:
    """The azd environment's name and values: ``name``, else ``AZURE_ENV_NAME``, else the
    ``defaultEnvironment`` of ``.azure/config.json``; (None, {}) when there is none and
    none was asked for."""
    chosen = name or environ.get("AZURE_ENV_NAME")
    azure = project / ".azure"
    if not chosen:
        config = azure / "config.json"
        if not config.is_file():
            return None, {}
        try:
            chosen = json.loads(config.read_text()).get("defaultEnvironment")
        except (ValueError, AttributeError) as error:
            raise TargetError(f"{config} is not azd's config (JSON with defaultEnvironment): {error}") from None
        if not chosen:
            return None, {}
    dotenv = azure / str(chosen) / ".env"
    if not dotenv.is_file():
        raise TargetError(f"no azd environment {chosen!r}: {dotenv} does not exist (run `azd up`, or give "
                          "--env with the name of one under .azure/, or --project-dir)")
    return str(chosen), parse_dotenv(dotenv.read_text())


def resolve(flags: Mapping[str, str | None], *, project: Path, env_name: str | None,
            environ: Mapping[str, str], storage: str | None = None, arm_url: str = ARM_URL) -> Target:
    """The target from the flags (by field name), the azd environment and ``environ``."""
    name, values = azd_environment(project, env_name, environ)
    found: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, variable, flag in SETTINGS:
        for source, value in ((flag, flags.get(key)), (f"azd env {name}", values.get(variable)),
                              ("environment", environ.get(variable))):
            if value:
                found[key], sources[key] = value, source
                break
        else:
            if key in DEFAULTS:
                found[key], sources[key] = DEFAULTS[key], "default"
    if found.get("offline_command_policy") not in ("queue", "reject"):
        raise TargetError(f"OFFLINE_COMMAND_POLICY (--offline-command-policy) is "
                          f"{found.get('offline_command_policy')!r}: queue or reject")
    target = Target(function_url=str(found.pop("function_url", "")).rstrip("/"),
                    storage_connection_string=storage, arm_url=arm_url.rstrip("/"), environment=name,
                    sources=sources, **found)
    target.require("function_url", why="the simulator's Azure mode")
    if not (target.storage_blob_endpoint or storage):
        target.require("storage_blob_endpoint", why="reading the archive and dead letters (or --storage)")
    return target


async def function_key(target: Target, credential: Any) -> str:
    """The key to call the API with: ``--function-key`` / ``FUNCTION_KEY``, else the host's
    default function key from Azure Resource Manager (``POST .../sites/{app}/host/default/
    listkeys``) with a token from ``credential`` (an async ``TokenCredential``)."""
    import aiohttp

    if target.function_key:
        return target.function_key
    target.require("subscription_id", "resource_group", "function_app",
                   why="reading the function key from Azure Resource Manager (else give --function-key)")
    url = (f"{target.arm_url}/subscriptions/{target.subscription_id}/resourceGroups/{target.resource_group}"
           f"/providers/Microsoft.Web/sites/{target.function_app}/host/default/listkeys"
           f"?api-version={LIST_KEYS_API_VERSION}")
    token = await credential.get_token(f"{target.arm_url}/.default")
    async with aiohttp.ClientSession() as session, session.post(
            url, headers={"Authorization": f"Bearer {token.token}"}, data=b"") as response:
        body = await response.json(content_type=None) if response.content_length != 0 else None
        if response.status != 200:
            error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
            raise TargetError(f"Azure Resource Manager answered {response.status} to listing the keys of "
                              f"{target.function_app}: {error.get('code', '')} {error.get('message', '')}".rstrip()
                              + " (your account needs a role with Microsoft.Web/sites/host/listkeys/action, "
                                "e.g. Contributor on the function app, or give --function-key)")
    keys = (body or {}).get("functionKeys") or {}
    key = keys.get("default") or next(iter(keys.values()), None)
    if not key:
        raise TargetError(f"the function app {target.function_app} has no function key (functionKeys is empty)")
    return str(key)

