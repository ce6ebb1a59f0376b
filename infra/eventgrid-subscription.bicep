// Subscription of the `client_lifecycle` function to the MQTT client life cycle
// events of the Event Grid namespace (its system topic).
//
// Deployed by the azd postdeploy hook (infra/hooks/postdeploy.sh / .ps1): Event
// Grid validates an Azure Function destination when the subscription is
// created, so the function must already be deployed.
// Resource group scope: `az deployment group create -g $AZURE_RESOURCE_GROUP -f infra/eventgrid-subscription.bicep ...`

@description('Name of the system topic of the Event Grid namespace (EVENTGRID_LIFECYCLE_SYSTEM_TOPIC_NAME).')
param systemTopicName string

@description('Name of the function app (AZURE_FUNCTION_APP_NAME).')
param functionAppName string

@description('Name of the function receiving the events.')
param functionName string = 'client_lifecycle'

@description('Storage account holding the dead-letter container (AZURE_STORAGE_ACCOUNT_NAME).')
param storageAccountName string

@description('Blob container for events that could not be delivered (LIFECYCLE_DEADLETTER_CONTAINER).')
param deadLetterContainerName string = 'lifecycle-deadletter'

@minValue(1)
@maxValue(30)
@description('Delivery attempts before an event is dead-lettered.')
param maxDeliveryAttempts int = 30

@minValue(1)
@maxValue(1440)
@description('Time to live of an event, in minutes, before it is dead-lettered.')
param eventTimeToLiveInMinutes int = 1440

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource functionApp 'Microsoft.Web/sites@2024-11-01' existing = {
  name: functionAppName
}

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: storageAccountName
}

resource lifecycleSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: 'client-lifecycle-to-function'
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
        resourceId: '${functionApp.id}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    // Dead letters are written with the system topic's identity
    // (Storage Blob Data Contributor on this container, see app/eventgrid.bicep):
    // the storage account accepts no shared keys.
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output subscriptionName string = lifecycleSubscription.name
