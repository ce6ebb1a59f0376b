#!/bin/sh
# azd postdeploy hook: subscribe the client_lifecycle function to the MQTT client
# life cycle events of the Event Grid namespace (infra/eventgrid-subscription.bicep).
# Event Grid validates an Azure Function destination when the subscription is
# created, so this runs after the code is deployed. Needs the Azure CLI (az login).
set -eu

for name in AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME EVENTGRID_LIFECYCLE_SYSTEM_TOPIC_NAME AZURE_STORAGE_ACCOUNT_NAME; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "postdeploy: $name is not set; run 'azd provision' first." >&2
    exit 1
  fi
done

if [ -n "${AZURE_SUBSCRIPTION_ID:-}" ]; then
  az account set --subscription "$AZURE_SUBSCRIPTION_ID"
fi

attempt=1
max_attempts=6
while :; do
  echo "postdeploy: creating the life cycle event subscription (attempt $attempt of $max_attempts)..."
  if az deployment group create \
      --resource-group "$AZURE_RESOURCE_GROUP" \
      --name "eventgrid-lifecycle-subscription" \
      --template-file "./infra/eventgrid-subscription.bicep" \
      --parameters \
        systemTopicName="$EVENTGRID_LIFECYCLE_SYSTEM_TOPIC_NAME" \
        functionAppName="$AZURE_FUNCTION_APP_NAME" \
        storageAccountName="$AZURE_STORAGE_ACCOUNT_NAME" \
        deadLetterContainerName="${LIFECYCLE_DEADLETTER_CONTAINER:-lifecycle-deadletter}" \
      --output none; then
    echo "postdeploy: client_lifecycle subscribed to $EVENTGRID_LIFECYCLE_SYSTEM_TOPIC_NAME."
    exit 0
  fi
  if [ "$attempt" -ge "$max_attempts" ]; then
    echo "postdeploy: could not create the event subscription; is the client_lifecycle function deployed?" >&2
    exit 1
  fi
  # Right after a deployment the function may not be listed yet.
  attempt=$((attempt + 1))
  sleep 20
done
