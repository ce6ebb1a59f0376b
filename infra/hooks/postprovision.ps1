# azd postprovision hook: write local.settings.json so that a local `func start`
# uses the deployed storage, Event Hubs and Event Grid with your Azure CLI login
# (DefaultAzureCredential). Host state (AzureWebJobsStorage) stays in Azurite.
# Your account needs data roles: `azd env set GRANT_DEVELOPER_ACCESS true; azd provision`.
# An existing local.settings.json is kept as local.settings.json.bak.
$ErrorActionPreference = 'Stop'

if (-not $env:EVENTHUB_FULLY_QUALIFIED_NAMESPACE) {
    Write-Warning 'postprovision: azd outputs are missing; skipping local.settings.json.'
    exit 0
}

function Get-Setting([string]$name, [string]$default) {
    $value = [Environment]::GetEnvironmentVariable($name)
    if ($value) { return $value } else { return $default }
}

if (Test-Path 'local.settings.json') {
    Copy-Item 'local.settings.json' 'local.settings.json.bak' -Force
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
    MQTT_BROKER_URL                             = ''
    MQTT_USERNAME                               = ''
    MQTT_PASSWORD                               = ''
    OFFLINE_COMMAND_POLICY                      = (Get-Setting 'OFFLINE_COMMAND_POLICY' 'queue')
    ALERT_RULES                                 = (Get-Setting 'ALERT_RULES' '')
    FLAPPING_DISCONNECTS                        = (Get-Setting 'FLAPPING_DISCONNECTS' '5')
    FLAPPING_WINDOW_SECONDS                     = (Get-Setting 'FLAPPING_WINDOW_SECONDS' '600')
    MAX_FUTURE_SECONDS                          = '300'
}
[ordered]@{ IsEncrypted = $false; Values = $values } |
    ConvertTo-Json -Depth 4 |
    Set-Content -Path 'local.settings.json' -Encoding utf8
Write-Host 'postprovision: wrote local.settings.json (deployed resources, your Azure CLI identity).'
if ((Get-Setting 'GRANT_DEVELOPER_ACCESS' 'false') -ne 'true') {
    Write-Host 'postprovision: note: GRANT_DEVELOPER_ACCESS is not true; your account has no data roles yet.'
}
