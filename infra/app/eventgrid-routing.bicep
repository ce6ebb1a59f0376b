// Second PUT of the Event Grid namespace: the same resource as in eventgrid.bicep
// with routing of every MQTT message to a namespace topic of the same namespace
// (eventgrid.bicep builds the configuration). The topic must exist before routing can
// point at it, hence two writes of one resource on the first provision; later
// provisions route in the first write too (eventgrid.bicep, routingEstablished).

param location string
param tags object
param name string
param capacity int
param topicSpacesConfiguration object

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
    topicSpacesConfiguration: topicSpacesConfiguration
  }
}

output hostname string = namespace.properties.topicSpacesConfiguration.hostname
