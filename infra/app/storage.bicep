// Storage account of the function app: host state (AzureWebJobsStorage), the
// Flex Consumption deployment package, the app's data (DataStorage: archive and
// dead-letter containers, tables) and what Event Grid could not deliver: life
// cycle events (system topic subscription) and routed MQTT messages (namespace
// topic subscriptions). Shared keys are off: every client uses Entra ID.

param location string
param tags object
param name string
param deploymentContainerName string
param dataContainerNames string[]
param lifecycleDeadLetterContainerName string
param routingDeadLetterContainerName string
param tableNames string[]
param logAnalyticsWorkspaceId string = ''

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }

  resource blobService 'blobServices' = {
    name: 'default'
    properties: {
      deleteRetentionPolicy: {
        enabled: true
        days: 7
      }
    }

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }

    resource dataContainers 'containers' = [
      for container in dataContainerNames: {
        name: container
        properties: {
          publicAccess: 'None'
        }
      }
    ]

    resource lifecycleDeadLetterContainer 'containers' = {
      name: lifecycleDeadLetterContainerName
      properties: {
        publicAccess: 'None'
      }
    }

    resource routingDeadLetterContainer 'containers' = {
      name: routingDeadLetterContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }

  resource tableService 'tableServices' = {
    name: 'default'

    resource tables 'tables' = [
      for table in tableNames: {
        name: table
      }
    ]
  }

  resource queueService 'queueServices' = {
    name: 'default'
  }
}

// Deletions only (StorageDelete): the audit group's StorageWrite logs every write, and
// the host's lease renewals and checkpoints (AzureWebJobsStorage, this account) write
// every few seconds per partition, enough to use up the workspace's daily cap, which
// Application Insights shares (docs/deploy.md, Cost drivers).
resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(logAnalyticsWorkspaceId)) {
  name: 'to-log-analytics'
  scope: storage::blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
