"""Where the app's metrics go: in Azure (``APPLICATIONINSIGHTS_CONNECTION_STRING`` set,
as ``infra/`` sets it), to Application Insights through the Azure Monitor exporter,
every 60 s (OpenTelemetry's default interval), authenticated with the app's managed
identity when ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` names it (``infra/``
turns local auth off). Elsewhere, to whatever ``MeterProvider`` the process set
(``tools.status`` sets one for the local view), else nowhere.

Not Microsoft's worker's own ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``: it
configures the whole Azure Monitor distro (traces, logs and instrumentations the
host already covers) at worker start, and without a credential, so it cannot send
to a resource whose local auth is off. The SDK and the exporter cost about 100 ms of
imports, paid at the first emission rather than at start.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from shared.platform.settings import Rule, setting, settings_class, settings_of

METER = "edge_cloud_messaging"
log = logging.getLogger(__name__)


def connection_string(raw: str) -> str:
    """Application Insights' connection string: empty (no export) or one naming its key."""
    if raw and "InstrumentationKey=" not in raw:
        raise Rule("must be Application Insights' connection string (InstrumentationKey=...;IngestionEndpoint=...), "
                   "or empty")
    return raw


@settings_class
class MetricsSettings:
    # infra/ sets both; empty (locally): the metrics go nowhere (tools.status shows them).
    connection_string: str = setting("APPLICATIONINSIGHTS_CONNECTION_STRING", parse=connection_string, default="")
    authentication: str = setting("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", default="")


@cache
def meter() -> Any:
    """The app's meter, configured once per process: an exporter that cannot be
    configured is logged once, and the metrics go nowhere rather than fail a batch."""
    from opentelemetry import metrics

    try:
        settings = settings_of(MetricsSettings)
        if settings.connection_string:
            _export_to_azure_monitor(settings.connection_string, settings.authentication)
    except Exception:
        log.exception("the metrics exporter could not be configured; no metrics are sent")
    return metrics.get_meter(METER)


def _export_to_azure_monitor(connection_string: str, authentication: str) -> None:
    from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if isinstance(metrics.get_meter_provider(), MeterProvider):
        return  # the process chose already
    exporter = AzureMonitorMetricExporter(connection_string=connection_string, credential=credential(authentication))
    # The resource (the cloud role) comes from OTEL_SERVICE_NAME, which infra/ sets to the app's name.
    metrics.set_meter_provider(MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter)]))


def credential(authentication: str) -> Any:
    """The credential ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` asks for (the host's
    format: ``Authorization=AAD`` and, for a user-assigned identity, ``ClientId=...``),
    else None (instrumentation key auth)."""
    parts = dict(part.split("=", 1) for part in authentication.split(";") if "=" in part)
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    from azure.identity import ManagedIdentityCredential

    client_id = parts.get("ClientId") or None
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
