"""Settings, declared per capability and validated where that capability runs.

A capability declares its settings as a class decorated with :func:`settings_class`
(a frozen dataclass) whose fields name their environment variable with
:func:`setting`. :func:`settings_of` validates the class at first use and keeps the
instance, so one bad setting fails only the functions that read it. Every field is
checked and one :class:`SettingsError` names every bad setting with the rule it
breaks, never its value (a value may be a password or an account key).

Built on the standard library rather than pydantic-settings, whose import alone
costs about 70 ms of a cold start. Every setting named here is listed in
``local.settings.sample.json``, docs/operations.md (Settings) and the function app's
settings in ``infra/``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, dataclass_transform
from urllib.parse import urlsplit

from shared.platform.errors import ConfigurationError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    S = TypeVar("S", bound=DataclassInstance)
else:
    S = TypeVar("S")
T = TypeVar("T")


class SettingsError(ConfigurationError):
    """Settings that break their rules; ``problems`` maps each setting's name to its rule."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(sorted(problems.items()))
        super().__init__("; ".join(f"{name} {rule}" for name, rule in self.problems.items()))


class Rule(ValueError):
    """Raised by a parser: the rule a value breaks, worded to follow the setting's name."""


# --- parsers: text in, value out, or Rule("must be ...") ---------------------------


def text(raw: str) -> str:
    return raw


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise Rule(f"must be one of {', '.join(allowed)}")
        return raw

    return parse


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise Rule(f"must be a whole number from {low} to {high}")
        return value

    return parse


def _url(raw: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(raw)
        valid = parts.scheme in schemes and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        valid = False
    if not valid:
        raise Rule(f"must be a {' or '.join(f'{s}://' for s in schemes)} URL with a host")
    return raw


def http_url(raw: str) -> str:
    return _url(raw, ("https", "http"))


def mqtt_url(raw: str) -> str:
    return _url(raw, ("mqtt", "mqtts"))


# The well-known Azurite account; "UseDevelopmentStorage=true" means this.
AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def storage_connection_string(raw: str) -> str:
    """A connection string the storage SDKs accept (checked here, because their own
    errors surface only at the first request)."""
    if raw.replace(" ", "").lower() == "usedevelopmentstorage=true":
        return AZURITE_CONNECTION_STRING
    pairs = [part.split("=", 1) for part in raw.rstrip(";").split(";")]
    keys = {pair[0].strip().lower() for pair in pairs}
    if any(len(pair) != 2 or not pair[0].strip() or not pair[1] for pair in pairs) or len(keys) != len(pairs):
        raise Rule("must be a storage connection string: Name=value pairs separated by ';'")
    if not ({"accountname", "accountkey"} <= keys or "sharedaccesssignature" in keys):
        raise Rule("must name AccountName and AccountKey, or a SharedAccessSignature")
    if not ("accountname" in keys or {"blobendpoint", "tableendpoint"} <= keys):
        raise Rule("must name AccountName, or BlobEndpoint and TableEndpoint")
    return raw


# --- declaring and loading ----------------------------------------------------------


def setting(name: str, *, parse: Callable[[str], Any] = text, default: Any = None, secret: bool = False) -> Any:
    """A field read from environment variable ``name`` with ``parse``; unset or empty
    means ``default``. A ``secret`` is left out of the instance's repr."""
    return dataclasses.field(default=default, repr=not secret, metadata={"setting": name, "parse": parse})


_REGISTRY: list[type[Any]] = []


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(setting,))
def settings_class(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass of settings and register it, so that ``health``
    validates every capability's settings.

    A class may define ``problems(self) -> dict[str, str]`` for rules across its
    settings; they are checked with the values that passed their own rules."""
    data_class = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
    _REGISTRY.append(data_class)
    return data_class


def registered() -> tuple[type[Any], ...]:
    """Every settings class declared so far (``shared.meta.health`` imports them all)."""
    return tuple(_REGISTRY)


def setting_names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.metadata["setting"] for f in dataclasses.fields(cls))


def load(cls: type[S], env: Mapping[str, str] | None = None) -> S:
    """Validate every setting of ``cls`` from ``env`` (default ``os.environ``); raise one
    :class:`SettingsError` naming each bad setting."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for field in dataclasses.fields(cls):
        name = field.metadata["setting"]
        raw = (env.get(name) or "").strip()
        values[field.name] = field.default
        if not raw:
            continue
        try:
            values[field.name] = field.metadata["parse"](raw)
        except Rule as exc:
            problems[name] = str(exc)
        except Exception:  # noqa: BLE001 - a parser's own message could quote the value
            problems[name] = "is not valid"
    instance = cls(**values)
    cross_check: Callable[[], dict[str, str]] | None = getattr(instance, "problems", None)
    for name, rule in (cross_check() if cross_check else {}).items():
        problems.setdefault(name, rule)
    if problems:
        raise SettingsError(problems)
    return instance


_cache: dict[type[Any], Any] = {}


def settings_of(cls: type[S]) -> S:
    """The process's validated ``cls``, loaded at first use (a failure is not kept)."""
    instance = _cache.get(cls)
    if instance is None:
        instance = _cache[cls] = load(cls)
    return instance


def settings_problems() -> dict[str, str]:
    """The bad settings of every registered class, each with the rule it breaks."""
    problems: dict[str, str] = {}
    for cls in registered():
        try:
            settings_of(cls)
        except SettingsError as exc:
            problems |= exc.problems
    return dict(sorted(problems.items()))


def reset_settings() -> None:
    """Forget validated settings (tests change the environment)."""
    _cache.clear()


# --- the platform's own settings ----------------------------------------------------


@settings_class
class StorageSettings:
    """How to reach ``DataStorage``: a connection string, or service URIs and a
    managed identity (``__credential=managedidentity``, ``__clientId`` for a
    user-assigned one; otherwise ``DefaultAzureCredential``)."""

    connection_string: str | None = setting("DataStorage", parse=storage_connection_string, secret=True)
    blob_service_uri: str | None = setting("DataStorage__blobServiceUri", parse=http_url)
    table_service_uri: str | None = setting("DataStorage__tableServiceUri", parse=http_url)
    client_id: str | None = setting("DataStorage__clientId")
    credential: str | None = setting("DataStorage__credential")

    def problems(self) -> dict[str, str]:
        if self.connection_string:
            return {}
        if self.blob_service_uri is None and self.table_service_uri is None:
            return {"DataStorage": (
                "is not set: set DataStorage to a storage connection string (UseDevelopmentStorage=true "
                "for Azurite), or set DataStorage__blobServiceUri and DataStorage__tableServiceUri "
                "for a managed identity")}
        return {name: "is not set (both service URIs are needed)"
                for name, uri in (("DataStorage__blobServiceUri", self.blob_service_uri),
                                  ("DataStorage__tableServiceUri", self.table_service_uri)) if uri is None}
