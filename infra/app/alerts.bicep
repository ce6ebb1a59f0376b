// Alert rules for what needs a person, and where they go. Event Grid dead-letters
// what it could not deliver: routed device messages (the namespace's hub
// subscriptions, to container routing-deadletter) and client life cycle events (the
// system topic's subscription, to lifecycle-deadletter). Either means data the app
// did not get; docs/deploy.md says how to find and replay it.

param location string
param tags object
param eventGridNamespaceName string
param systemTopicName string
param applicationInsightsName string
@description('Dead-lettered messages and events in 15 minutes above which a person should look.')
param deadLetterThreshold int = 100
@description('Seconds behind (now minus the newest enqueued time of a batch) above which a person should look.')
param lagThresholdSeconds int = 300
@description('Failed client_lifecycle runs in 15 minutes above which a person should look (Event Grid retries each).')
param lifecycleFailureThreshold int = 10
@description('Where alerts are emailed (ALERT_EMAIL); empty: the rules fire in Azure Monitor only.')
param alertEmail string = ''

var notify = !empty(alertEmail)

resource namespace 'Microsoft.EventGrid/namespaces@2025-02-15' existing = {
  name: eventGridNamespaceName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
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

// What the app itself reports (shared/platform/metrics.py, exported every minute to
// customMetrics; the host's runs are in requests): log alerts, evaluated every 5
// minutes over the last 15. Each query names only metrics and dimensions the app
// emits (tests/infra/test_observability.py).
var appRules = [
  {
    name: 'app-dead-letters-above-rate'
    description: 'More messages or events than deadLetterThreshold went to dead letters in 15 minutes: read them with GET /api/deadletters (docs/monitoring.md, Where to look first).'
    severity: 2
    query: '''
customMetrics
| where name == "edge.stream.dead_lettered"
| summarize letters = sum(valueSum)
'''
    measure: 'letters'
    aggregation: 'Total'
    threshold: deadLetterThreshold
  }
  {
    name: 'app-lag-above-bound'
    description: 'An ingest function reads more than lagThresholdSeconds behind its partition: it fails and retries, or it cannot keep up (docs/capacity.md).'
    severity: 2
    query: '''
customMetrics
| where name == "edge.stream.lag"
| summarize lag = max(valueMax)
'''
    measure: 'lag'
    aggregation: 'Maximum'
    threshold: lagThresholdSeconds
  }
  {
    name: 'app-last-retry-taken'
    description: 'A batch failed every retry and went to dead letters whole (reason internal): storage or a setting failed for 15 minutes. Redrive them once it is mended (docs/monitoring.md).'
    severity: 1
    query: '''
customMetrics
| where name == "edge.batch.last_retry"
| summarize events = sum(valueSum)
'''
    measure: 'events'
    aggregation: 'Total'
    threshold: 0
  }
  {
    name: 'app-lifecycle-deliveries-failing'
    description: 'client_lifecycle fails: Event Grid retries each event, then dead-letters it to lifecycle-deadletter; the registry falls behind the broker meanwhile.'
    severity: 2
    query: '''
requests
| where operation_Name == "client_lifecycle" and success == false
| summarize failures = count()
'''
    measure: 'failures'
    aggregation: 'Total'
    threshold: lifecycleFailureThreshold
  }
]

resource appAlerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in appRules: {
  name: rule.name
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.name
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: rule.query
          metricMeasureColumn: rule.measure
          timeAggregation: rule.aggregation
          operator: 'GreaterThan'
          threshold: rule.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: notify ? [
        actionGroup.id
      ] : []
    }
  }
}]

output actionGroupId string = notify ? actionGroup.id : ''
