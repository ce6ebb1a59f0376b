# azd postdeploy hook: subscribe the client_lifecycle function to the MQTT client life
# cycle events of the Event Grid namespace. Event Grid checks that an Azure Function
# destination exists when the subscription is created, so this runs after the code is
# deployed.
#
# One Azure Resource Manager request: a PUT of the subscription that main.bicep
# describes in its outputs (EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL, the body
# EVENTGRID_LIFECYCLE_SUBSCRIPTION), signed with azd's own sign-in (`azd auth token`),
# then the operation followed to its end. Neither the Azure CLI nor the Bicep CLI is
# needed, so it runs wherever azd is signed in, in a pipeline set up by
# `azd pipeline config` too. Run it again with `azd hooks run postdeploy`.
$ErrorActionPreference = 'Stop'

foreach ($name in 'EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL', 'EVENTGRID_LIFECYCLE_SUBSCRIPTION') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        Write-Host "postdeploy: $name is not set; run 'azd provision' first."
        exit 1
    }
}

function Get-Number([string]$name, [int]$default) {
    $value = [Environment]::GetEnvironmentVariable($name)
    if ($value) { return [int]$value } else { return $default }
}
$attempts = Get-Number 'POSTDEPLOY_ATTEMPTS' 6          # the function may not be listed yet right after a deployment
$retrySeconds = Get-Number 'POSTDEPLOY_RETRY_SECONDS' 20
$pollSeconds = Get-Number 'POSTDEPLOY_POLL_SECONDS' 5
$polls = Get-Number 'POSTDEPLOY_POLLS' 36                # about three minutes per attempt

# A token for Azure Resource Manager from azd's sign-in, in the deployment's tenant.
$tenantArgs = @()
if ($env:AZURE_TENANT_ID) { $tenantArgs = @('--tenant-id', $env:AZURE_TENANT_ID) }
$tokenJson = & azd auth token --output json @tenantArgs    # its errors go to the console as they are
if ($LASTEXITCODE -ne 0) {
    Write-Host ("postdeploy: azd has no token for Azure Resource Manager: sign in with 'azd auth login' " +
        "(in a pipeline: the credential 'azd pipeline config' set up), then run 'azd hooks run postdeploy'.")
    exit 1
}
$token = ($tokenJson | Out-String | ConvertFrom-Json).token
if (-not $token) {
    Write-Host "postdeploy: 'azd auth token --output json' printed no token; is azd up to date (azure.yaml, requiredVersions)?"
    exit 1
}
$headers = @{ Authorization = "Bearer $token" }
$url = $env:EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL

function Send-Request([string]$method, [string]$uri, [string]$body) {
    $options = @{ Method = $method; Uri = $uri; Headers = $headers; SkipHttpErrorCheck = $true; TimeoutSec = 60 }
    if ($body) { $options.Body = $body; $options.ContentType = 'application/json' }
    try {
        return Invoke-WebRequest @options
    } catch {
        Write-Host "postdeploy: no answer from Azure Resource Manager: $($_.Exception.Message)"
        return $null
    }
}

function Get-Json($response) {
    if ($null -eq $response -or -not $response.Content) { return $null }
    try { return $response.Content | ConvertFrom-Json } catch { return $null }
}

function Get-Problem($response) {
    $json = Get-Json $response
    if ($json -and $json.error -and $json.error.message) { return $json.error.message }
    if ($json -and $json.message) { return $json.message }
    return ''
}

# Follow the operation the PUT started ("Azure-AsyncOperation" header, else the resource itself).
function Wait-Operation($response) {
    $operation = $response.Headers['Azure-AsyncOperation'] | Select-Object -Last 1
    $current = if ($operation) { 'InProgress' } else { (Get-Json $response).properties.provisioningState }
    $last = $response
    for ($poll = 0; ; $poll++) {
        if ($current -eq 'Succeeded') { return $true }
        if ($current -in 'Failed', 'Canceled') {
            Write-Host "postdeploy: the subscription was not created ($current): $(Get-Problem $last)"
            return $false
        }
        if ($poll -ge $polls) {
            Write-Host "postdeploy: the subscription is still $current after $polls checks."
            return $false
        }
        Start-Sleep -Seconds $pollSeconds
        $target = if ($operation) { $operation } else { $url }
        $reply = Send-Request 'GET' $target $null
        if ($reply -and $reply.StatusCode -eq 200) {
            $last = $reply
            $json = Get-Json $reply
            $current = if ($operation) { $json.status } else { $json.properties.provisioningState }
        }
    }
}

for ($attempt = 1; $attempt -le $attempts; $attempt++) {
    Write-Host "postdeploy: creating the life cycle event subscription (attempt $attempt of $attempts)..."
    $response = Send-Request 'PUT' $url $env:EVENTGRID_LIFECYCLE_SUBSCRIPTION
    $code = if ($response) { [int]$response.StatusCode } else { 0 }
    if ($code -in 200, 201, 202) {
        if (Wait-Operation $response) {
            Write-Host 'postdeploy: client_lifecycle subscribed to the MQTT client life cycle events.'
            exit 0
        }
    } elseif ($code -in 401, 403) {
        Write-Host "postdeploy: Azure Resource Manager refused the request (HTTP $code): $(Get-Problem $response)"
        Write-Host ("postdeploy: the account azd signs in with needs to create event subscriptions in the resource " +
            "group (for example Contributor), as 'azd provision' does.")
        exit 1
    } else {
        Write-Host "postdeploy: HTTP ${code}: $(Get-Problem $response)"
    }
    if ($attempt -lt $attempts) { Start-Sleep -Seconds $retrySeconds }
}
Write-Host ("postdeploy: could not create the event subscription; is the client_lifecycle function deployed? " +
    "Run 'azd hooks run postdeploy' to try again.")
exit 1
