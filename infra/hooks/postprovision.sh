#!/bin/sh
# azd postprovision hook: write local.settings.json so that a local `func start`
# uses the deployed storage, Event Hubs and Event Grid with your Azure CLI login
# (DefaultAzureCredential). Host state (AzureWebJobsStorage) stays in Azurite.
# Your account needs data roles: `azd env set GRANT_DEVELOPER_ACCESS true && azd provision`.
# local.settings.json is written anew on every run. The first time the hook finds a
# local.settings.json and no local.settings.json.bak, it keeps that file as
# local.settings.json.bak; it never overwrites the .bak, so your own file survives any
# number of runs.
set -eu

if [ -z "${EVENTHUB_FULLY_QUALIFIED_NAMESPACE:-}" ]; then
  echo "postprovision: azd outputs are missing; skipping local.settings.json." >&2
  exit 0
fi

# Routing exists now: every later provision keeps it in its first write of the
# namespace (infra/app/eventgrid.bicep, routingEstablished). postdown sets it back.
azd env set EVENTGRID_ROUTING_ESTABLISHED true ||
  echo "postprovision: could not record EVENTGRID_ROUTING_ESTABLISHED; the next provision pauses routing while it runs." >&2

PYTHON=$(command -v python3 || command -v python || true)
if [ -z "$PYTHON" ]; then
  echo "postprovision: python is needed to write local.settings.json; skipping." >&2
  exit 0
fi

if [ -f local.settings.json ] && [ ! -e local.settings.json.bak ]; then
  cp local.settings.json local.settings.json.bak
  echo "postprovision: kept your local.settings.json as local.settings.json.bak."
fi

"$PYTHON" - <<'PY'
import base64
import binascii
import json
import os
import sys

env = os.environ.get
# ALERT_RULES travels base64-encoded (docs/deploy.md, Parameters), as main.bicep decodes it.
encoded = "".join(env("ALERT_RULES_BASE64", "").split())
try:
    alert_rules = base64.b64decode(encoded, validate=True).decode("utf-8")
except (binascii.Error, UnicodeDecodeError):
    sys.exit("postprovision: ALERT_RULES_BASE64 must be base64 of UTF-8 text (docs/deploy.md, Parameters); "
             "local.settings.json not written.")
if env("ALERT_RULES"):
    print("postprovision: note: ALERT_RULES in the azd environment is not used; set ALERT_RULES_BASE64 "
          "(docs/deploy.md, Parameters).", file=sys.stderr)

blob = env("AZURE_STORAGE_BLOB_ENDPOINT", "")
table = env("AZURE_STORAGE_TABLE_ENDPOINT", "")
values = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "DataStorage__blobServiceUri": blob,
    "DataStorage__tableServiceUri": table,
    "EventHubConnection__fullyQualifiedNamespace": env("EVENTHUB_FULLY_QUALIFIED_NAMESPACE", ""),
    "TELEMETRY_HUB_NAME": env("TELEMETRY_HUB_NAME", "telemetry"),
    "INFERENCE_HUB_NAME": env("INFERENCE_HUB_NAME", "inference"),
    "COMMAND_RESPONSES_HUB_NAME": env("COMMAND_RESPONSES_HUB_NAME", "command-responses"),
    "ALERTS_HUB_NAME": env("ALERTS_HUB_NAME", "alerts"),
    # Never the functions' own group: a local host would steal partitions from the cloud.
    "EVENTHUB_CONSUMER_GROUP": env("EVENTHUB_LOCAL_CONSUMER_GROUP") or "$Default",
    "COMMAND_TRANSPORT": "eventgrid",
    "EVENTGRID_MQTT_HOSTNAME": env("EVENTGRID_MQTT_HOSTNAME", ""),
    "EVENTGRID_PUBLISH_API_VERSION": "2025-02-15-preview",
    "MQTT_BROKER_URL": "",
    "MQTT_USERNAME": "",
    "MQTT_PASSWORD": "",
    "OFFLINE_COMMAND_POLICY": env("OFFLINE_COMMAND_POLICY") or "queue",
    "TRUST_APP_SERVICE_AUTH": "false",
    "ALERT_RULES": alert_rules,
    "FLAPPING_DISCONNECTS": env("FLAPPING_DISCONNECTS") or "5",
    "FLAPPING_WINDOW_SECONDS": env("FLAPPING_WINDOW_SECONDS") or "600",
    "MAX_FUTURE_SECONDS": "300",
    # A local run sends no metrics: the deployment's Application Insights takes only
    # its managed identity's telemetry, so its workbook shows the deployment alone.
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "",
}
with open("local.settings.json", "w", encoding="utf-8") as handle:
    json.dump({"IsEncrypted": False, "Values": values}, handle, indent=2)
    handle.write("\n")
print("postprovision: wrote local.settings.json (deployed resources, your Azure CLI identity).")
if env("GRANT_DEVELOPER_ACCESS", "false").lower() != "true":
    print("postprovision: note: GRANT_DEVELOPER_ACCESS is not true; your account has no data roles yet.")
PY
