// Event Hubs namespace (Standard, Entra ID only, TLS 1.2) with the hubs the
// function app reads (telemetry, inference, command responses) and writes
// (alerts), and the consumer groups of the functions.

param location string
param tags object
param name string
param capacity int = 1
param partitionCount int = 2
param retentionDays int = 1
param telemetryHubName string
param inferenceHubName string
param commandResponsesHubName string
param alertsHubName string
param consumerGroupNames string[]
param logAnalyticsWorkspaceId string = ''

var ingestHubNames = [
  telemetryHubName
  inferenceHubName
  commandResponsesHubName
]

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: capacity
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    isAutoInflateEnabled: false
  }
}

resource ingestHubs 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = [
  for hub in ingestHubNames: {
    parent: namespace
    name: hub
    properties: {
      partitionCount: partitionCount
      messageRetentionInDays: retentionDays
    }
  }
]

resource alertsHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: alertsHubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: retentionDays
  }
}

// One consumer group per (ingest hub, group name).
resource consumerGroups 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = [
  for pair in flatten(map(ingestHubNames, hub => map(consumerGroupNames, group => {
    hub: hub
    group: group
  }))): {
    name: '${name}/${pair.hub}/${pair.group}'
    properties: {
      userMetadata: 'Edge Cloud Messaging function app'
    }
    dependsOn: [
      ingestHubs
    ]
  }
]

// Management operations only: allLogs adds the data plane's runtime audit and
// application metrics logs, records per connection and operation that scale with the
// fleet and share the workspace's daily cap with Application Insights. Metrics
// (throughput, throttling, errors) go too and cost nothing against the cap.
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(logAnalyticsWorkspaceId)) {
  name: 'to-log-analytics'
  scope: namespace
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'OperationalLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output name string = namespace.name
output id string = namespace.id
// The namespace's host as the service reports it (https://HOST:443/), so a sovereign
// cloud's suffix is right without knowing it.
output fullyQualifiedNamespace string = split(split(split(namespace.properties.serviceBusEndpoint, '://')[1], '/')[0], ':')[0]
