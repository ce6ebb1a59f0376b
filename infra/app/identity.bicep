// The user-assigned managed identity of the function app. Every data-plane
// connection of the app (storage, Event Hubs, Event Grid HTTP Publish,
// Application Insights) authenticates with it.

param location string
param tags object
param name string

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output name string = identity.name
output id string = identity.id
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
