# azd postdeploy hook: subscribe the client_lifecycle function to the MQTT client
# life cycle events of the Event Grid namespace (infra/eventgrid-subscription.bicep).
# Event Grid validates an Azure Function destination when the subscription is
# created, so this runs after the code is deployed. Needs the Azure CLI (az login).
$ErrorActionPreference = 'Stop'

foreach ($name in 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'EVENTGRID_LIFECYCLE_SYSTEM_TOPIC_NAME', 'AZURE_STORAGE_ACCOUNT_NAME') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        Write-Error "postdeploy: $name is not set; run 'azd provision' first."
        exit 1
    }
}

if ($env:AZURE_SUBSCRIPTION_ID) {
    az account set --subscription $env:AZURE_SUBSCRIPTION_ID
}

$deadLetterContainer = if ($env:LIFECYCLE_DEADLETTER_CONTAINER) { $env:LIFECYCLE_DEADLETTER_CONTAINER } else { 'lifecycle-deadletter' }
$maxAttempts = 6
for ($attempt = 1; $attempt -le $maxAttempts; $attempt++) {
    Write-Host "postdeploy: creating the life cycle event subscription (attempt $attempt of $maxAttempts)..."
    az deployment group create `
        --resource-group $env:AZURE_RESOURCE_GROUP `
        --name 'eventgrid-lifecycle-subscription' `
        --template-file './infra/eventgrid-subscription.bicep' `
        --parameters `
            "systemTopicName=$($env:EVENTGRID_LIFECYCLE_SYSTEM_TOPIC_NAME)" `
            "functionAppName=$($env:AZURE_FUNCTION_APP_NAME)" `
            "storageAccountName=$($env:AZURE_STORAGE_ACCOUNT_NAME)" `
            "deadLetterContainerName=$deadLetterContainer" `
        --output none
    if ($LASTEXITCODE -eq 0) {
        Write-Host "postdeploy: client_lifecycle subscribed to $($env:EVENTGRID_LIFECYCLE_SYSTEM_TOPIC_NAME)."
        exit 0
    }
    # Right after a deployment the function may not be listed yet.
    if ($attempt -lt $maxAttempts) { Start-Sleep -Seconds 20 }
}
Write-Error 'postdeploy: could not create the event subscription; is the client_lifecycle function deployed?'
exit 1
