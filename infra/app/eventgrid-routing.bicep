// Second PUT of the Event Grid namespace: the same configuration as in
// eventgrid.bicep plus routing of every MQTT message to a namespace topic of
// the same namespace. The topic must exist before routing can point at it,
// hence two deployments of one resource. Keep both in step.

param location string
param tags object
param name string
param capacity int
param maximumClientSessionsPerAuthenticationName int
param maximumSessionExpiryInHours int
param routeTopicResourceId string
param deviceIdEnrichmentKey string
param clientRoleEnrichmentKey string

resource namespace 'Microsoft.EventGrid/namespaces@2025-02-15' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    capacity: capacity
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    minimumTlsVersionAllowed: '1.2'
    publicNetworkAccess: 'Enabled'
    topicSpacesConfiguration: {
      state: 'Enabled'
      maximumClientSessionsPerAuthenticationName: maximumClientSessionsPerAuthenticationName
      maximumSessionExpiryInHours: maximumSessionExpiryInHours
      // A namespace topic of this namespace: no routing identity needed.
      routeTopicResourceId: routeTopicResourceId
      routingEnrichments: {
        dynamic: [
          {
            // CloudEvent extension attribute carrying the device id (the client's authentication name).
            key: deviceIdEnrichmentKey
            value: '\${client.authenticationName}'
          }
          {
            // CloudEvent extension attribute carrying the publisher's client attribute
            // `role` ('edge-device' for every device); "" for what the app publishes with
            // HTTP Publish (no client resource, no attributes). The hub subscriptions
            // filter on it (eventgrid.bicep).
            key: clientRoleEnrichmentKey
            value: '\${client.attributes.role}'
          }
        ]
        static: [
          {
            key: 'app'
            valueType: 'String'
            value: 'edge-cloud-messaging'
          }
        ]
      }
    }
  }
}

output hostname string = namespace.properties.topicSpacesConfiguration.hostname
