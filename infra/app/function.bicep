// The function app on Flex Consumption (Linux, Python 3.13), running as its
// user-assigned identity. Every connection is identity-based: no keys or
// connection strings are stored in the app settings.
//
// Its logs go to Application Insights only, filtered by host.json. No diagnostic
// setting sends FunctionAppLogs to Log Analytics: on Flex Consumption those ignore
// host.json's levels, and they would fill the workspace that Application Insights
// writes to, whose daily cap then stops Application Insights too (docs/deploy.md, Cost drivers).

param location string
param tags object
param name string
param planName string
param identityName string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
@description('The Event Hubs namespace host (eventhubs.bicep reads it from the namespace: the suffix differs in sovereign clouds).')
param eventHubsFullyQualifiedNamespace string
param telemetryHubName string
param inferenceHubName string
param commandResponsesHubName string
param alertsHubName string
param consumerGroupName string
param eventGridMqttHostname string
param offlineCommandPolicy string = 'queue'
param alertRules string = ''
param flappingDisconnects int = 5
param flappingWindowSeconds int = 600
param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048
param pythonVersion string = '3.13'
@description('Client id of an Entra ID app registration you name (AUTH_CLIENT_ID): App Service authentication then guards the API, and issuedBy is the caller\'s principal. Empty: function keys only.')
param authClientId string = ''
@description('With authClientId: true refuses callers without an Entra ID token (401); false also lets function keys in (AUTH_REQUIRED).')
param authRequired bool = false

var withAuth = !empty(authClientId)

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-11-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    clientAffinityEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }

  // Every setting the code reads (local.settings.sample.json), identity-based.
  // FUNCTIONS_WORKER_RUNTIME is not set: Flex Consumption takes it from functionAppConfig.runtime.
  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      // Host storage (leases, Event Hubs checkpoints, timer state).
      AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
      AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
      AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identity.properties.clientId
      // App data: archive and dead-letter containers, tables.
      DataStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
      DataStorage__tableServiceUri: storage.properties.primaryEndpoints.table
      DataStorage__credential: 'managedidentity'
      DataStorage__clientId: identity.properties.clientId
      // Event Hubs triggers and the alerts output.
      EventHubConnection__fullyQualifiedNamespace: eventHubsFullyQualifiedNamespace
      EventHubConnection__credential: 'managedidentity'
      EventHubConnection__clientId: identity.properties.clientId
      TELEMETRY_HUB_NAME: telemetryHubName
      INFERENCE_HUB_NAME: inferenceHubName
      COMMAND_RESPONSES_HUB_NAME: commandResponsesHubName
      ALERTS_HUB_NAME: alertsHubName
      EVENTHUB_CONSUMER_GROUP: consumerGroupName
      // Commands: HTTP Publish to the Event Grid MQTT broker with the identity.
      COMMAND_TRANSPORT: 'eventgrid'
      EVENTGRID_MQTT_HOSTNAME: eventGridMqttHostname
      // Only where App Service authentication guards the API (authClientId) is a
      // principal header an identity (docs/operations.md, Settings): the platform then sets it.
      TRUST_APP_SERVICE_AUTH: withAuth ? 'true' : 'false'
      // HTTP Publish is a preview API (docs/operations.md, Settings): the tested default.
      EVENTGRID_PUBLISH_API_VERSION: '2025-02-15-preview'
      MQTT_BROKER_URL: ''
      MQTT_USERNAME: ''
      MQTT_PASSWORD: ''
      OFFLINE_COMMAND_POLICY: offlineCommandPolicy
      ALERT_RULES: alertRules
      FLAPPING_DISCONNECTS: string(flappingDisconnects)
      FLAPPING_WINDOW_SECONDS: string(flappingWindowSeconds)
      MAX_FUTURE_SECONDS: '300'
      // azure-identity's DefaultAzureCredential picks the user-assigned identity.
      AZURE_CLIENT_ID: identity.properties.clientId
      // Application Insights with Entra ID authentication (local auth is off).
      APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
      // The app's metrics' cloud role (OpenTelemetry's resource), as the host's telemetry has it.
      OTEL_SERVICE_NAME: name
    }
  }

  // App Service authentication with the Entra ID app registration you name: tokens for
  // api://{clientId} are validated by the platform, which then sets the principal
  // headers the app reads and strips any a caller sends. Health and the OpenAPI
  // document stay anonymous; without authRequired, function keys still work.
  resource authentication 'config' = if (withAuth) {
    name: 'authsettingsV2'
    properties: {
      platform: {
        enabled: true
      }
      globalValidation: {
        requireAuthentication: authRequired
        unauthenticatedClientAction: authRequired ? 'Return401' : 'AllowAnonymous'
        excludedPaths: [
          '/api/health'
          '/api/openapi.json'
        ]
      }
      identityProviders: {
        azureActiveDirectory: {
          enabled: true
          registration: {
            clientId: authClientId
            openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
          }
          validation: {
            allowedAudiences: [
              'api://${authClientId}'
            ]
          }
        }
      }
    }
  }

  // No FTP or SCM basic-auth publishing: azd deploys with Entra ID.
  resource ftpPolicy 'basicPublishingCredentialsPolicies' = {
    name: 'ftp'
    properties: {
      allow: false
    }
  }

  resource scmPolicy 'basicPublishingCredentialsPolicies' = {
    name: 'scm'
    properties: {
      allow: false
    }
  }
}

output name string = site.name
output id string = site.id
output uri string = 'https://${site.properties.defaultHostName}'
