# azd postdown hook: the namespace is gone, so the next provision is a first one again,
# whose first write of the namespace cannot route yet (infra/app/eventgrid.bicep,
# routingEstablished; postprovision sets it).
$ErrorActionPreference = 'Stop'
azd env set EVENTGRID_ROUTING_ESTABLISHED false
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
Write-Host 'postdown: EVENTGRID_ROUTING_ESTABLISHED=false (the next azd up routes from its second write of the namespace).'
