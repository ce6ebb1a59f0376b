// Alert rules for what needs a person, and where they go. Event Grid dead-letters
// what it could not deliver: routed device messages (the namespace's hub
// subscriptions, to container routing-deadletter) and client life cycle events (the
// system topic's subscription, to lifecycle-deadletter). Either means data the app
// did not get; docs/deploy.md says how to find and replay it.

param tags object
param eventGridNamespaceName string
param systemTopicName string
@description('Where alerts are emailed (ALERT_EMAIL); empty: the rules fire in Azure Monitor only.')
param alertEmail string = ''

var notify = !empty(alertEmail)

resource namespace 'Microsoft.EventGrid/namespaces@2025-02-15' existing = {
  name: eventGridNamespaceName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (notify) {
  name: 'ag-edge-messaging'
  location: 'global'
  tags: tags
  properties: {
    enabled: true
    groupShortName: 'edgemsg'
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Any routed message dead-lettered or dropped in 15 minutes (evaluated every 5).
resource routedDeadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'routed-messages-dead-lettered'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid could not deliver routed device messages to Event Hubs: they are in container routing-deadletter (docs/deploy.md, Routed messages Event Grid could not deliver).'
    severity: 2
    enabled: true
    scopes: [
      namespace.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'deadLettered'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'Microsoft.EventGrid/namespaces'
          metricName: 'SuccessfulDeadLetteredEvents'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    actions: notify ? [
      {
        actionGroupId: actionGroup.id
      }
    ] : []
  }
}

// Any life cycle event dead-lettered in 15 minutes: the registry misses a connect,
// disconnect or client change until it is replayed.
resource lifecycleDeadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'lifecycle-events-dead-lettered'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid could not deliver client life cycle events to client_lifecycle: they are in container lifecycle-deadletter (docs/deploy.md).'
    severity: 2
    enabled: true
    scopes: [
      systemTopic.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'deadLettered'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DeadLetteredCount'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    actions: notify ? [
      {
        actionGroupId: actionGroup.id
      }
    ] : []
  }
}

output actionGroupId string = notify ? actionGroup.id : ''
