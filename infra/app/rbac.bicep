// Least-privilege role assignments, each scoped to the narrowest resource.
//
// Storage data roles take the scopes the storage docs list: a container, a queue, a table,
// the account, the resource group or the subscription ("Assign an Azure role for access
// to blob / queue / table data"). The service level (blobServices/default,
// queueServices/default, tableServices/default) is not one of them.
//
// Function app identity:
//   Storage Blob Data Owner         storage account  Functions host (AzureWebJobsStorage with identity:
//                                                    leases, Event Hubs checkpoints, keys) - required by
//                                                    the host; also covers the app's archive containers
//   Storage Queue Data Contributor  storage account  Functions host queues (AzureWebJobsStorage): the
//                                                    fleet-fanout queue of the fleet_fanout trigger
//   Storage Table Data Contributor  storage account  app tables (devices, alerts, commands, fleetjobs, appmeta,
//                                                    modelstats, broadcasts, deadletters) and the host's diagnostic events
//                                                    table (AzureWebJobsStorage), which the host creates and
//                                                    deletes by month: no table scope can name it beforehand
//   Azure Event Hubs Data Receiver  each ingest hub  Event Hubs triggers
//   Azure Event Hubs Data Sender    alerts hub       alert output
//   EventGrid TopicSpaces Publisher cloud-publish topic space  HTTP Publish of commands and broadcasts
//   Monitoring Metrics Publisher    Application Insights  telemetry with Entra ID auth
// Developer (only when grantDeveloperAccess; development only): the same data access
// minus host ownership, for `func start` against the deployed resources (whose host
// storage stays in Azurite): blob data on each app container (never the account: the
// deployment package lives there), table data on each app table. Event Hubs Data
// Sender on each ingest hub only with developerSendsToIngestHubs too: what it sends is
// trusted as if the broker had authenticated it (the simulator's --via eventhubs and
// the routing dead-letter replay need it).

param appPrincipalId string
param developerPrincipalId string = ''
@allowed([
  'User'
  'ServicePrincipal'
])
param developerPrincipalType string = 'User'
param storageAccountName string
@description('The app\'s tables (DataStorage), created by app/storage.bicep.')
param tableNames string[]
@description('The blob containers a developer works with: the app\'s and the Event Grid dead-letter ones (not the deployment package\'s).')
param developerContainerNames string[] = []
@description('Also let the developer send to the ingest hubs (GRANT_DEVELOPER_HUB_SEND): events it sends are trusted like routed ones.')
param developerSendsToIngestHubs bool = false
param eventHubNamespaceName string
param ingestHubNames string[]
param alertsHubName string
param eventGridNamespaceName string
@description('The topic space of what the app publishes (eventgrid.bicep `cloud-publish`); no client group is bound to it.')
param cloudPublishTopicSpaceName string
param applicationInsightsName string

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  eventGridTopicSpacesPublisher: 'a12b0b94-b317-4dcd-84a8-502ce99884c6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var withDeveloper = !empty(developerPrincipalId)

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: storageAccountName

  resource tableService 'tableServices' existing = {
    name: 'default'
  }

  resource blobService 'blobServices' existing = {
    name: 'default'
  }
}

resource developerContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' existing = [
  for container in developerContainerNames: {
    parent: storage::blobService
    name: container
  }
]

resource appTables 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' existing = [
  for table in tableNames: {
    parent: storage::tableService
    name: table
  }
]

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource ingestHubs 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = [
  for hub in ingestHubNames: {
    parent: eventHubNamespace
    name: hub
  }
]

resource alertsHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: eventHubNamespace
  name: alertsHubName
}

resource eventGridNamespace 'Microsoft.EventGrid/namespaces@2025-02-15' existing = {
  name: eventGridNamespaceName
}

resource cloudPublishTopicSpace 'Microsoft.EventGrid/namespaces/topicSpaces@2025-02-15' existing = {
  parent: eventGridNamespace
  name: cloudPublishTopicSpaceName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// ----------------------------------------------------------------------------- function app identity

resource appBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage (AzureWebJobsStorage) and the app archive (DataStorage).'
  }
}

resource appQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Functions host queues (AzureWebJobsStorage): fleet-fanout.'
  }
}

resource appTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'App tables (DataStorage) and the Functions host diagnostic events table (AzureWebJobsStorage).'
  }
}

resource appHubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (hub, i) in ingestHubNames: {
    name: guid(ingestHubs[i].id, appPrincipalId, roles.eventHubsDataReceiver)
    scope: ingestHubs[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      description: 'Event Hubs trigger on ${hub}.'
    }
  }
]

resource appAlertsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(alertsHub.id, appPrincipalId, roles.eventHubsDataSender)
  scope: alertsHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Alerts sent to the ${alertsHubName} hub.'
  }
}

// HTTP Publish: "The identity used to make the HTTP Publish request must have the Azure
// RBAC role EventGrid TopicSpaces Publisher"; scoped to the one topic space whose
// templates are the app's topics (devices/+/commands/+, broadcast/+,
// groups/+/broadcast/+), not to the namespace, so the app can publish nothing else.
resource appCommandsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cloudPublishTopicSpace.id, appPrincipalId, roles.eventGridTopicSpacesPublisher)
  scope: cloudPublishTopicSpace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridTopicSpacesPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'HTTP Publish of commands (devices/{id}/commands/{name}) and broadcasts (broadcast/{name}, groups/{group}/broadcast/{name}).'
  }
}

resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Application Insights telemetry with Entra ID authentication.'
  }
}

// ----------------------------------------------------------------------------- developer (optional, for local runs)

resource devBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (container, i) in developerContainerNames: if (withDeveloper) {
    name: guid(developerContainers[i].id, developerPrincipalId, roles.storageBlobDataContributor)
    scope: developerContainers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
      principalId: developerPrincipalId
      principalType: developerPrincipalType
      description: 'Local run: container ${container}.'
    }
  }
]

resource devTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (table, i) in tableNames: if (withDeveloper) {
    name: guid(appTables[i].id, developerPrincipalId, roles.storageTableDataContributor)
    scope: appTables[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
      principalId: developerPrincipalId
      principalType: developerPrincipalType
      description: 'Local run: app table ${table}.'
    }
  }
]

resource devHubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (hub, i) in ingestHubNames: if (withDeveloper) {
    name: guid(ingestHubs[i].id, developerPrincipalId, roles.eventHubsDataReceiver)
    scope: ingestHubs[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
      principalId: developerPrincipalId
      principalType: developerPrincipalType
      description: 'Local run: Event Hubs trigger on ${hub}.'
    }
  }
]

// The fleet simulator's Azure mode without MQTT (python -m tools.simulate --azure --via
// eventhubs) and tools/replay_routing_deadletters.py send routed CloudEvents to the ingest hubs.
resource devHubSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (hub, i) in ingestHubNames: if (withDeveloper && developerSendsToIngestHubs) {
    name: guid(ingestHubs[i].id, developerPrincipalId, roles.eventHubsDataSender)
    scope: ingestHubs[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
      principalId: developerPrincipalId
      principalType: developerPrincipalType
      description: 'Simulator and routing dead-letter replay: send to ${hub}.'
    }
  }
]

resource devAlertsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withDeveloper) {
  name: guid(alertsHub.id, developerPrincipalId, roles.eventHubsDataSender)
  scope: alertsHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
    principalId: developerPrincipalId
    principalType: developerPrincipalType
    description: 'Local run: alerts hub.'
  }
}

resource devCommandsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withDeveloper) {
  name: guid(cloudPublishTopicSpace.id, developerPrincipalId, roles.eventGridTopicSpacesPublisher)
  scope: cloudPublishTopicSpace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridTopicSpacesPublisher)
    principalId: developerPrincipalId
    principalType: developerPrincipalType
    description: 'Local run: HTTP Publish of commands and broadcasts.'
  }
}
