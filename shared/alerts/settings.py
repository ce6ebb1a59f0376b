"""Settings of alerts: the stream alert rules and forwarding to a hub.

``ALERT_RULES`` is parsed and every rule validated here (see
:mod:`shared.alerts.rules`), so a bad rule list fails the functions that raise
stream alerts and ``health`` names it. ``EventHubConnection`` is also read by the
host's Event Hubs triggers; here it is how :mod:`shared.alerts.forward` reaches
``ALERTS_HUB_NAME``: a connection string, or a namespace and a managed identity.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from shared.alerts.rules import DEFAULT_RULES, AlertRule, rules_from_json
from shared.platform.settings import Rule, setting, settings_class

_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)+")


def eventhub_connection_string(raw: str) -> str:
    """An Event Hubs connection string as the SDK reads one: ``Endpoint=sb://host``
    with ``SharedAccessKeyName`` and ``SharedAccessKey``, or a ``SharedAccessSignature``."""
    pairs = [part.split("=", 1) for part in raw.strip().rstrip(";").split(";")]
    if any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
        raise Rule("must be an Event Hubs connection string: Name=value pairs separated by ';'")
    values = {name.strip().lower(): value.strip() for name, value in pairs}
    try:
        endpoint = urlsplit(values.get("endpoint", ""))
        valid = endpoint.scheme == "sb" and bool(endpoint.hostname)
        endpoint.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        valid = False
    if not valid:
        raise Rule("must name an Endpoint=sb://<namespace host>")
    if not ((values.get("sharedaccesskeyname") and values.get("sharedaccesskey"))
            or values.get("sharedaccesssignature")):
        raise Rule("must name SharedAccessKeyName and SharedAccessKey, or a SharedAccessSignature")
    return raw


def host_name(raw: str) -> str:
    if not _HOST.fullmatch(raw):
        raise Rule("must be a host name such as <namespace>.servicebus.windows.net (no scheme, port or path)")
    return raw


def managed_identity(raw: str) -> str:
    if raw.lower() != "managedidentity":
        raise Rule("must be managedidentity (or unset for DefaultAzureCredential)")
    return raw.lower()


@settings_class
class AlertSettings:
    """``rules`` are the built-in :data:`~shared.alerts.rules.DEFAULT_RULES` when
    ``ALERT_RULES`` is unset. Forwarding is on when ``ALERTS_HUB_NAME`` is set, and then
    needs ``EventHubConnection`` or ``EventHubConnection__fullyQualifiedNamespace``
    (a connection string wins, as in the host)."""

    rules: tuple[AlertRule, ...] = setting("ALERT_RULES", parse=rules_from_json, default=DEFAULT_RULES)
    alerts_hub_name: str | None = setting("ALERTS_HUB_NAME")
    eventhub_connection_string: str | None = setting("EventHubConnection", parse=eventhub_connection_string,
                                                     secret=True)
    eventhub_namespace: str | None = setting("EventHubConnection__fullyQualifiedNamespace", parse=host_name)
    eventhub_client_id: str | None = setting("EventHubConnection__clientId")
    eventhub_credential: str | None = setting("EventHubConnection__credential", parse=managed_identity)

    def problems(self) -> dict[str, str]:
        if self.alerts_hub_name and not (self.eventhub_connection_string or self.eventhub_namespace):
            return {"EventHubConnection": (
                "is not set, and ALERTS_HUB_NAME needs it: set EventHubConnection to an Event Hubs connection "
                "string, or EventHubConnection__fullyQualifiedNamespace for a managed identity")}
        return {}
