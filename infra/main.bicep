// Edge Cloud Messaging: everything the function app needs, secure by default.
// `azd up` deploys this file (subscription scope: it creates the resource group);
// `azd down` deletes the resource group and with it every resource below.
targetScope = 'subscription'

// ----------------------------------------------------------------------------- parameters

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to name the resource group and derive a unique resource token.')
param environmentName string

@minLength(1)
@description('Azure region of all resources (must offer Flex Consumption and Event Grid MQTT).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the user or service principal running azd (AZURE_PRINCIPAL_ID); used only when grantDeveloperAccess is true.')
param principalId string = ''

@description('Grant the deploying principal data roles (blob, table, Event Hubs, MQTT HTTP Publish) so that `func start` can run locally against the deployed resources.')
param grantDeveloperAccess bool = false

@description('Development only, with grantDeveloperAccess: also let your account send to the ingest hubs (Azure Event Hubs Data Sender), which the app trusts as the broker\'s routing; for the simulator\'s --via eventhubs and the routing dead-letter replay.')
param grantDeveloperHubSend bool = false

@description('Kind of the deploying principal.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Name of the resource group; default rg-{environmentName}.')
param resourceGroupName string = ''

// Event Hubs
@minValue(1)
@maxValue(32)
@description('Partitions per event hub (fixed after creation on Standard). More partitions = more parallel function instances.')
param eventHubPartitionCount int = 2

@minValue(1)
@maxValue(7)
@description('Retention of events in every hub, in days (Standard: 1 to 7).')
param eventHubRetentionDays int = 1

@minValue(1)
@maxValue(20)
@description('Throughput units of the Event Hubs namespace (the main fixed cost).')
param eventHubCapacity int = 1

@description('Name of the hub receiving device telemetry.')
param telemetryHubName string = 'telemetry'

@description('Name of the hub receiving inference results.')
param inferenceHubName string = 'inference'

@description('Name of the hub receiving command responses.')
param commandResponsesHubName string = 'command-responses'

@description('Name of the hub the app sends alerts to.')
param alertsHubName string = 'alerts'

@description('Consumer group of the functions on the ingest hubs.')
param functionsConsumerGroupName string = 'functions'

@description('Consumer group for a local `func start` against the deployed hubs (created when grantDeveloperAccess is true).')
param localConsumerGroupName string = 'local'

// Event Grid
@minValue(1)
@maxValue(40)
@description('Throughput units of the Event Grid namespace (MQTT connections and message rate).')
param eventGridCapacity int = 1

@description('Set by the postprovision hook once routing exists (azd environment value EVENTGRID_ROUTING_ESTABLISHED): every later provision keeps routing in its first write of the namespace, so telemetry is never left unrouted while it runs.')
param eventGridRoutingEstablished bool = false

@minValue(1)
@maxValue(100)
@description('EVENTGRID_MAX_SESSIONS_PER_DEVICE: concurrent MQTT sessions allowed per authentication name (device id). 1: a second connection with the same certificate cannot run beside the first.')
param maximumClientSessionsPerAuthenticationName int = 1

@minValue(1)
@maxValue(8)
@description('Longest MQTT session expiry a device may request, in hours.')
param maximumSessionExpiryInHours int = 1

@description('Device clients to register (certificate thumbprint authentication, or CA chain and subject when a client lists no thumbprints). name = the MQTT client authentication name = device id.')
param deviceClients deviceClient[] = []

@description('CA certificates on the namespace, for CA-chain client authentication (docs/deploy.md, Onboarding a large fleet): name (3-50 letters, digits, -) and encodedCertificate (base64 of the DER). A client without thumbprints is validated by the chain to one of them and its subject (SubjectMatchesAuthenticationName).')
param deviceCaCertificates deviceCaCertificate[] = []

@description('Optional first device (FIRST_DEVICE_NAME): its authentication name (device id). Empty: none. Needs firstDeviceThumbprint.')
param firstDeviceName string = ''

@description('Optional first device (FIRST_DEVICE_THUMBPRINT): SHA-256 thumbprint of its client certificate (hex, no colons). Needs firstDeviceName.')
param firstDeviceThumbprint string = ''

// Function app
@minValue(1)
@maxValue(1000)
@description('Flex Consumption: most instances the app scales out to, per function scale group (the Event Hubs functions scale apart from the HTTP ones). Flex allows 1 to 1000.')
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
@description('Flex Consumption: memory of one instance in MB.')
param instanceMemoryMB int = 2048

@allowed([
  'queue'
  'reject'
])
@description('OFFLINE_COMMAND_POLICY: hold commands for an offline device (queue) or answer 409 (reject).')
param offlineCommandPolicy string = 'queue'

@description('ALERT_RULES (a JSON list of alert rules) encoded in base64 (ALERT_RULES_BASE64): azd writes environment values into main.parameters.json without JSON escaping, so JSON itself cannot travel there. Empty: the app\'s documented defaults.')
param alertRulesBase64 string = ''

@minValue(1)
@maxValue(10)
@description('FLAPPING_DISCONNECTS: disconnects within the window that mark a device as flapping (the app keeps 10).')
param flappingDisconnects int = 5

@minValue(1)
@description('FLAPPING_WINDOW_SECONDS: window of the flapping detection, in seconds.')
param flappingWindowSeconds int = 600

@description('Retention of the Log Analytics workspace, in days.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('LOG_DAILY_QUOTA_GB: daily ingestion cap of the Log Analytics workspace in GB (-1 = no cap). Application Insights writes to the same workspace: when the cap is reached, ingestion stops for everything, Application Insights included, until the daily reset.')
@minValue(-1)
param logDailyQuotaGb int = 1

@description('Optional (AUTH_CLIENT_ID): client id of an Entra ID app registration you name; App Service authentication then guards the API (docs/deploy.md, Who can do what). Empty: function keys only.')
param authClientId string = ''

@description('With authClientId (AUTH_REQUIRED): true refuses callers without an Entra ID token; false also accepts function keys.')
param authRequired bool = false

@description('Optional (ALERT_EMAIL): where the alert rules (app/alerts.bicep) send mail; empty: they fire in Azure Monitor only.')
param alertEmail string = ''

// ----------------------------------------------------------------------------- types

@description('A CA certificate the namespace trusts to issue device certificates.')
type deviceCaCertificate = {
  @minLength(3)
  @maxLength(50)
  name: string
  @description('Base64 of the certificate\'s DER (the PEM body without its header lines).')
  encodedCertificate: string
}

@description('An MQTT client (device) of the Event Grid namespace.')
type deviceClient = {
  @description('Client resource name and authentication name (the device id): letters, digits, -, :, ., _.')
  name: string
  @description('SHA-256 thumbprints of the client certificates the device may present: Event Grid takes one or two (two while a certificate is rolled over). Leave it out for a device whose certificate a CA of deviceCaCertificates issued: its subject must name the device.')
  @minLength(1)
  @maxLength(2)
  thumbprints: string[]?
  @description('Extra client attributes (role = edge-device is always set; other attributes, e.g. site or type, serve fleet targeting).')
  attributes: object?
}

// ----------------------------------------------------------------------------- names

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var lifecycleDeadLetterContainerName = 'lifecycle-deadletter'
// Routed MQTT messages Event Grid could not deliver to a hub (docs/deploy.md).
var routingDeadLetterContainerName = 'routing-deadletter'

// Blob containers and tables the app reads and writes (shared/storage_names.py).
var dataBlobContainers = [
  'telemetry'
  'inference'
  'deadletter'
]
var dataTables = [
  'devices'
  'alerts'
  'commands'
  'fleetjobs'
  'appmeta'
  'modelstats'
  'broadcasts'
  'deadletters'
  'lateststate'
]

// The first device needs both its name and its certificate's thumbprint: a client without
// a thumbprint (allowedThumbprints: ['']) is one that no certificate can ever match. The
// deployment stops with the message instead (`fail`, evaluated only in the branch taken).
var firstDevice = empty(firstDeviceName) && empty(firstDeviceThumbprint)
  ? []
  : [
      {
        name: !empty(firstDeviceName)
          ? firstDeviceName
          : fail('FIRST_DEVICE_THUMBPRINT is set but FIRST_DEVICE_NAME is empty: set both (docs/deploy.md, Onboarding a device) or neither.')
        thumbprints: [
          !empty(firstDeviceThumbprint)
            ? firstDeviceThumbprint
            : fail('FIRST_DEVICE_NAME is set but FIRST_DEVICE_THUMBPRINT is empty: set the SHA-256 thumbprint of the device certificate (docs/deploy.md, Onboarding a device), or unset FIRST_DEVICE_NAME.')
        ]
      }
    ]
var allDeviceClients = concat(deviceClients, firstDevice)

// ALERT_RULES as the function app reads it.
var alertRules = empty(alertRulesBase64) ? '' : base64ToString(alertRulesBase64)

var developerPrincipalId = grantDeveloperAccess ? principalId : ''

// ----------------------------------------------------------------------------- resources

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    retentionInDays: logRetentionDays
    dailyQuotaGb: logDailyQuotaGb
  }
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    deploymentContainerName: deploymentContainerName
    dataContainerNames: dataBlobContainers
    lifecycleDeadLetterContainerName: lifecycleDeadLetterContainerName
    routingDeadLetterContainerName: routingDeadLetterContainerName
    tableNames: dataTables
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module eventHubs 'app/eventhubs.bicep' = {
  name: 'eventhubs'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.eventHubNamespaces}${resourceToken}'
    capacity: eventHubCapacity
    partitionCount: eventHubPartitionCount
    retentionDays: eventHubRetentionDays
    telemetryHubName: telemetryHubName
    inferenceHubName: inferenceHubName
    commandResponsesHubName: commandResponsesHubName
    alertsHubName: alertsHubName
    consumerGroupNames: grantDeveloperAccess
      ? [functionsConsumerGroupName, localConsumerGroupName]
      : [functionsConsumerGroupName]
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module eventGrid 'app/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.eventGridNamespaces}${resourceToken}'
    systemTopicName: '${abbrs.eventGridSystemTopics}${resourceToken}'
    capacity: eventGridCapacity
    maximumClientSessionsPerAuthenticationName: maximumClientSessionsPerAuthenticationName
    maximumSessionExpiryInHours: maximumSessionExpiryInHours
    eventHubNamespaceName: eventHubs.outputs.name
    telemetryHubName: telemetryHubName
    inferenceHubName: inferenceHubName
    commandResponsesHubName: commandResponsesHubName
    deviceClients: allDeviceClients
    caCertificates: deviceCaCertificates
    storageAccountName: storage.outputs.name
    lifecycleDeadLetterContainerName: lifecycleDeadLetterContainerName
    routingDeadLetterContainerName: routingDeadLetterContainerName
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    routingEstablished: eventGridRoutingEstablished
  }
}

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    location: location
    tags: tags
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    identityName: identity.outputs.name
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    eventHubsFullyQualifiedNamespace: eventHubs.outputs.fullyQualifiedNamespace
    telemetryHubName: telemetryHubName
    inferenceHubName: inferenceHubName
    commandResponsesHubName: commandResponsesHubName
    alertsHubName: alertsHubName
    consumerGroupName: functionsConsumerGroupName
    eventGridMqttHostname: eventGrid.outputs.mqttHostname
    offlineCommandPolicy: offlineCommandPolicy
    alertRules: alertRules
    flappingDisconnects: flappingDisconnects
    flappingWindowSeconds: flappingWindowSeconds
    maximumInstanceCount: maximumInstanceCount
    authClientId: authClientId
    authRequired: authRequired
    instanceMemoryMB: instanceMemoryMB
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    eventGridNamespaceName: eventGrid.outputs.name
    systemTopicName: eventGrid.outputs.systemTopicName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    alertEmail: alertEmail
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    eventGridNamespaceName: eventGrid.outputs.name
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    developerPrincipalId: developerPrincipalId
    developerPrincipalType: principalType
    storageAccountName: storage.outputs.name
    tableNames: dataTables
    developerContainerNames: concat(dataBlobContainers, [lifecycleDeadLetterContainerName, routingDeadLetterContainerName])
    developerSendsToIngestHubs: grantDeveloperHubSend
    eventHubNamespaceName: eventHubs.outputs.name
    ingestHubNames: [
      telemetryHubName
      inferenceHubName
      commandResponsesHubName
    ]
    alertsHubName: alertsHubName
    eventGridNamespaceName: eventGrid.outputs.name
    cloudPublishTopicSpaceName: eventGrid.outputs.cloudPublishTopicSpaceName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

// ----------------------------------------------------------------------------- outputs (stored by azd in .azure/<env>/.env)

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output RESOURCE_TOKEN string = resourceToken

output SERVICE_API_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_URI string = functionApp.outputs.uri
output AZURE_USER_ASSIGNED_IDENTITY_NAME string = identity.outputs.name
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.outputs.clientId

output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.applicationInsightsConnectionString
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName

output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output AZURE_STORAGE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output LIFECYCLE_DEADLETTER_CONTAINER string = lifecycleDeadLetterContainerName
output ROUTING_DEADLETTER_CONTAINER string = routingDeadLetterContainerName

output EVENTHUB_NAMESPACE_NAME string = eventHubs.outputs.name
output EVENTHUB_FULLY_QUALIFIED_NAMESPACE string = eventHubs.outputs.fullyQualifiedNamespace
output TELEMETRY_HUB_NAME string = telemetryHubName
output INFERENCE_HUB_NAME string = inferenceHubName
output COMMAND_RESPONSES_HUB_NAME string = commandResponsesHubName
output ALERTS_HUB_NAME string = alertsHubName
output EVENTHUB_CONSUMER_GROUP string = functionsConsumerGroupName
output EVENTHUB_LOCAL_CONSUMER_GROUP string = grantDeveloperAccess ? localConsumerGroupName : ''
output GRANT_DEVELOPER_ACCESS bool = grantDeveloperAccess

output EVENTGRID_NAMESPACE_NAME string = eventGrid.outputs.name
output EVENTGRID_MQTT_HOSTNAME string = eventGrid.outputs.mqttHostname
output EVENTGRID_LIFECYCLE_SYSTEM_TOPIC_NAME string = eventGrid.outputs.systemTopicName
output EVENTGRID_DEVICE_CLIENT_GROUP string = eventGrid.outputs.deviceClientGroupName

// ----------------------------------------------------------------------------- the life cycle subscription (azd postdeploy hook)

// The subscription of `client_lifecycle` to the MQTT client life cycle events of the
// namespace's system topic. Event Grid checks that an Azure Function destination exists
// when the subscription is created, so it cannot be part of this deployment (the code is
// deployed afterwards): the postdeploy hook (infra/hooks/postdeploy.sh, .ps1) PUTs this
// body to this URL with azd's own token, without the Azure CLI or the Bicep CLI.
var lifecycleSubscriptionName = 'client-lifecycle-to-function'

output EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL string = '${environment().resourceManager}${skip(eventGrid.outputs.systemTopicId, 1)}/eventSubscriptions/${lifecycleSubscriptionName}?api-version=2025-02-15'
output EVENTGRID_LIFECYCLE_SUBSCRIPTION object = {
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.EventGrid.MQTTClientSessionConnected'
        'Microsoft.EventGrid.MQTTClientSessionDisconnected'
        'Microsoft.EventGrid.MQTTClientCreatedOrUpdated'
        'Microsoft.EventGrid.MQTTClientDeleted'
      ]
    }
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.outputs.id}/functions/client_lifecycle'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    // Up to 30 attempts within 24 hours, then the dead-letter container.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    // Dead letters are written with the system topic's identity (Storage Blob Data
    // Contributor on this container, app/eventgrid.bicep): the account accepts no shared keys.
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.outputs.id
          blobContainerName: lifecycleDeadLetterContainerName
        }
      }
    }
  }
}
