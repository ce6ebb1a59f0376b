# azd postprovision hook: write local.settings.json so that a local `func start`
# uses the deployed storage, Event Hubs and Event Grid with your Azure CLI login
# (DefaultAzureCredential). Host state (AzureWebJobsStorage) stays in Azurite.
# Your account needs data roles: `azd env set GRANT_DEVELOPER_ACCESS true; azd provision`.
# local.settings.json is written anew on every run. The first time the hook finds a
# local.settings.json and no local.settings.json.bak, it keeps that file as
# local.settings.json.bak; it never overwrites the .bak, so your own file survives any
# number of runs.
$ErrorActionPreference = 'Stop'

if (-not $env:EVENTHUB_FULLY_QUALIFIED_NAMESPACE) {
    Write-Warning 'postprovision: azd outputs are missing; skipping local.settings.json.'
    exit 0
}

# Routing exists now: every later provision keeps it in its first write of the
# namespace (infra/app/eventgrid.bicep, routingEstablished). postdown sets it back.
azd env set EVENTGRID_ROUTING_ESTABLISHED true
if ($LASTEXITCODE -ne 0) {
    Write-Warning 'postprovision: could not record EVENTGRID_ROUTING_ESTABLISHED; the next provision pauses routing while it runs.'
}

function Get-Setting([string]$name, [string]$default) {
    $value = [Environment]::GetEnvironmentVariable($name)
    if ($value) { return $value } else { return $default }
}

# ALERT_RULES travels base64-encoded (docs/deploy.md, Parameters), as main.bicep decodes it.
$alertRules = ''
$encoded = (Get-Setting 'ALERT_RULES_BASE64' '') -replace '\s', ''
if ($encoded) {
    try {
        $alertRules = (New-Object System.Text.UTF8Encoding($false, $true)).GetString([Convert]::FromBase64String($encoded))
    } catch {
        Write-Error 'postprovision: ALERT_RULES_BASE64 must be base64 of UTF-8 text (docs/deploy.md, Parameters); local.settings.json not written.'
        exit 1
    }
}
if ($env:ALERT_RULES) {
    Write-Warning 'postprovision: ALERT_RULES in the azd environment is not used; set ALERT_RULES_BASE64 (docs/deploy.md, Parameters).'
}

if ((Test-Path 'local.settings.json') -and -not (Test-Path 'local.settings.json.bak')) {
    Copy-Item 'local.settings.json' 'local.settings.json.bak'
    Write-Host 'postprovision: kept your local.settings.json as local.settings.json.bak.'
}

$values = [ordered]@{
    FUNCTIONS_WORKER_RUNTIME                    = 'python'
    AzureWebJobsStorage                         = 'UseDevelopmentStorage=true'
    DataStorage__blobServiceUri                 = (Get-Setting 'AZURE_STORAGE_BLOB_ENDPOINT' '')
    DataStorage__tableServiceUri                = (Get-Setting 'AZURE_STORAGE_TABLE_ENDPOINT' '')
    EventHubConnection__fullyQualifiedNamespace = (Get-Setting 'EVENTHUB_FULLY_QUALIFIED_NAMESPACE' '')
    TELEMETRY_HUB_NAME                          = (Get-Setting 'TELEMETRY_HUB_NAME' 'telemetry')
    INFERENCE_HUB_NAME                          = (Get-Setting 'INFERENCE_HUB_NAME' 'inference')
    COMMAND_RESPONSES_HUB_NAME                  = (Get-Setting 'COMMAND_RESPONSES_HUB_NAME' 'command-responses')
    ALERTS_HUB_NAME                             = (Get-Setting 'ALERTS_HUB_NAME' 'alerts')
    # Never the functions' own group: a local host would steal partitions from the cloud.
    EVENTHUB_CONSUMER_GROUP                     = (Get-Setting 'EVENTHUB_LOCAL_CONSUMER_GROUP' '$Default')
    COMMAND_TRANSPORT                           = 'eventgrid'
    EVENTGRID_MQTT_HOSTNAME                     = (Get-Setting 'EVENTGRID_MQTT_HOSTNAME' '')
    EVENTGRID_PUBLISH_API_VERSION               = '2025-02-15-preview'
    MQTT_BROKER_URL                             = ''
    MQTT_USERNAME                               = ''
    MQTT_PASSWORD                               = ''
    OFFLINE_COMMAND_POLICY                      = (Get-Setting 'OFFLINE_COMMAND_POLICY' 'queue')
    TRUST_APP_SERVICE_AUTH                      = 'false'
    ALERT_RULES                                 = $alertRules
    FLAPPING_DISCONNECTS                        = (Get-Setting 'FLAPPING_DISCONNECTS' '5')
    FLAPPING_WINDOW_SECONDS                     = (Get-Setting 'FLAPPING_WINDOW_SECONDS' '600')
    MAX_FUTURE_SECONDS                          = '300'
    # A local run sends no metrics: the workbook shows the deployment alone.
    APPLICATIONINSIGHTS_CONNECTION_STRING       = ''
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING   = ''
}
[ordered]@{ IsEncrypted = $false; Values = $values } |
    ConvertTo-Json -Depth 4 |
    Set-Content -Path 'local.settings.json' -Encoding utf8
Write-Host 'postprovision: wrote local.settings.json (deployed resources, your Azure CLI identity).'
if ((Get-Setting 'GRANT_DEVELOPER_ACCESS' 'false') -ne 'true') {
    Write-Host 'postprovision: note: GRANT_DEVELOPER_ACCESS is not true; your account has no data roles yet.'
}
