// The operators' workbook (docs/monitoring.md): message flow, lag, dead letters,
// commands, connections, failures and retries, from the metrics the app emits
// (customMetrics, names edge.*, shared/platform/metrics.py) and the host's function
// runs (requests). Its queries are in workbook.json, checked against the app's
// metric catalogue by tests/infra/test_observability.py.

param location string
param tags object
param applicationInsightsName string
param eventGridNamespaceName string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource namespace 'Microsoft.EventGrid/namespaces@2025-02-15' existing = {
  name: eventGridNamespaceName
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name is a GUID: the same one on every deployment of this resource group.
  name: guid(resourceGroup().id, 'edge-messaging-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Edge Cloud Messaging'
    category: 'workbook'
    sourceId: applicationInsights.id
    version: 'Notebook/1.0'
    serializedData: replace(loadTextContent('workbook.json'), '__EVENT_GRID_NAMESPACE_ID__', namespace.id)
  }
}

output workbookId string = workbook.id
