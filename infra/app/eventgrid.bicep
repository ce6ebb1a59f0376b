// Event Grid namespace with the MQTT broker.
//
// Devices authenticate with a client certificate (thumbprint match); their
// authentication name is the device id. Their topic spaces use
// ${client.authenticationName} and ${client.attributes.group}, so that a device may only
//   publish   devices/{id}/telemetry, devices/{id}/inference,
//             devices/{id}/commands/+/response
//   subscribe devices/{id}/commands/+, broadcast/#, groups/{its group}/broadcast/#
// ("Topic Spaces in Azure Event Grid": "Topic templates support MQTT wildcards (+ and #)
// and the following variables: ${client.authenticationName} ... ${client.attributes.x}";
// "A variable can represent a portion of a segment or an entire segment but can't
// cover more than one segment").
//
// The function app publishes commands and broadcasts with HTTP Publish. "The Microsoft
// Entra Object ID becomes the MQTT client ID" and "The identity used to make the HTTP
// Publish request must have the Azure RBAC role EventGrid TopicSpaces Publisher" ("HTTP
// Publish of MQTT messages", "Publish MQTT messages via HTTP"): the app is no client
// resource, has no authentication name of a device and no attributes, so a template
// with ${client.authenticationName} never matches the topics it must publish. It gets
// a topic space of its own, `cloud-publish`, with plain wildcard templates and no
// permission binding (no client group may use it); its role is scoped to that topic
// space alone (app/rbac.bicep; "You can use these roles to provide permissions at
// subscription, resource group, Event Grid namespace, or Event Grid topic space scope").
//
// Every published message, HTTP Publish included ("Messages flow through the Event Grid
// routing and enrichment pipeline"), is routed to the namespace topic `device-messages`
// (CloudEvents, with routing enrichments `deviceid` and `clientrole`), from which three
// push subscriptions deliver to the Event Hubs with the namespace's system-assigned
// identity (Azure Event Hubs Data Sender on each hub). Each subscription takes only
// messages a device published (`clientrole` = the devices' role attribute; the app has
// no attributes, so the enrichment is "" for everything it publishes: "if a dynamic
// enrichment pointed to a client attribute ... that doesn't exist, the enrichment will
// include the specified key with an empty string for a value", "Enrichments for MQTT
// routed messages") and only its stream's topics (subject = MQTT topic). What they
// cannot deliver within their retries and time to live is dead-lettered, with the same
// identity, to the routing dead-letter container (Storage Blob Data Contributor on that
// container only).
// The system topic of the namespace carries the client life cycle events; its
// subscription to the `client_lifecycle` function is created after the code is
// deployed (main.bicep's output EVENTGRID_LIFECYCLE_SUBSCRIPTION, azd postdeploy hook).

param location string
param tags object
param name string
param systemTopicName string
param capacity int = 1
param maximumClientSessionsPerAuthenticationName int = 1
param maximumSessionExpiryInHours int = 1
param eventHubNamespaceName string
param telemetryHubName string
param inferenceHubName string
param commandResponsesHubName string
param deviceClients array = []
@description('CA certificates that issue device certificates (main.bicep deviceCaCertificates).')
param caCertificates array = []
param storageAccountName string
param lifecycleDeadLetterContainerName string
param routingDeadLetterContainerName string
param logAnalyticsWorkspaceId string = ''
@description('Whether an earlier provision set up routing (azd environment value EVENTGRID_ROUTING_ESTABLISHED, which the postprovision hook sets once it exists). Then the first write of the namespace keeps routing, so no device message goes unrouted while a later provision runs; on the first provision the route topic does not exist yet, so routing comes with the second write (eventgrid-routing.bicep).')
param routingEstablished bool = false

var deviceClientGroupName = 'edge-devices'
var deviceRoleAttribute = 'edge-device'
var routeTopicName = 'device-messages'
var deviceIdEnrichmentKey = 'deviceid'
var topicEnrichmentKey = 'mqtttopic'
// Routing enrichment ${client.attributes.role}: 'edge-device' for a device, '' for the app.
var clientRoleEnrichmentKey = 'clientrole'

// The namespace's MQTT broker settings, without and with routing: both writes of the
// namespace take them from here.
var topicSpaces = {
  state: 'Enabled'
  maximumClientSessionsPerAuthenticationName: maximumClientSessionsPerAuthenticationName
  maximumSessionExpiryInHours: maximumSessionExpiryInHours
}
var routedTopicSpaces = union(topicSpaces, {
  // A namespace topic of this namespace: no routing identity needed.
  routeTopicResourceId: resourceId('Microsoft.EventGrid/namespaces/topics', name, routeTopicName)
  routingEnrichments: {
    dynamic: [
      {
        // CloudEvent extension attribute carrying the device id (the client's authentication name).
        key: deviceIdEnrichmentKey
        value: '\${client.authenticationName}'
      }
      {
        // The PUBLISH's topic as the broker saw it: the app checks that the CloudEvent's
        // subject (which a device's own CloudEvent could set) agrees with it.
        key: topicEnrichmentKey
        value: '\${mqtt.message.topicName}'
      }
      {
        // CloudEvent extension attribute carrying the publisher's client attribute
        // `role` ('edge-device' for every device); "" for what the app publishes with
        // HTTP Publish (no client resource, no attributes). The hub subscriptions
        // filter on it.
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
})
// The first write of the namespace in this deployment.
var firstTopicSpaces = routingEstablished ? routedTopicSpaces : topicSpaces

// Built-in role: Azure Event Hubs Data Sender.
var eventHubsDataSenderRoleId = '2b629674-e913-4c01-ae53-ef4638d8f975'
// Built-in role: Storage Blob Data Contributor (dead letters of the life cycle and routing subscriptions).
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

// Which MQTT topics go to which hub: the subject of a routed message is its MQTT topic.
// Among the topics a device may publish (its topic spaces below), the suffix tells the
// stream apart: devices/{id}/telemetry, devices/{id}/inference,
// devices/{id}/commands/{commandId}/response. The topics the app publishes
// (devices/{id}/commands/{name}, broadcast/{name}, groups/{group}/broadcast/{name}) are
// kept out by the publisher, not by the topic: subject filters cannot count segments and
// compare without case ("All string comparisons aren't case-sensitive", "Event filters for
// subscriptions to Azure Event Grid namespace topics"), so no suffix or substring rule can
// tell a command named `telemetry` to device `x` (devices/x/commands/telemetry) from the
// telemetry of a device named `commands` (devices/commands/telemetry).
var routes = [
  {
    subscription: 'to-telemetry'
    hub: telemetryHubName
    suffix: '/telemetry'
  }
  {
    subscription: 'to-inference'
    hub: inferenceHubName
    suffix: '/inference'
  }
  {
    subscription: 'to-command-responses'
    hub: commandResponsesHubName
    suffix: '/response'
  }
]

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
    // With routing once an earlier provision set it up; on the first, routing comes
    // with eventgrid-routing.bicep once the namespace topic exists.
    topicSpacesConfiguration: firstTopicSpaces
  }
}

// ----------------------------------------------------------------------------- topic spaces, client group, permission bindings

resource deviceUplink 'Microsoft.EventGrid/namespaces/topicSpaces@2025-02-15' = {
  parent: namespace
  name: 'device-uplink'
  properties: {
    description: 'Telemetry and inference a device publishes about itself.'
    topicTemplates: [
      'devices/\${client.authenticationName}/telemetry'
      'devices/\${client.authenticationName}/inference'
    ]
  }
}

resource deviceResponses 'Microsoft.EventGrid/namespaces/topicSpaces@2025-02-15' = {
  parent: namespace
  name: 'device-command-responses'
  properties: {
    description: 'Responses a device publishes to the commands it received.'
    topicTemplates: [
      'devices/\${client.authenticationName}/commands/+/response'
    ]
  }
}

resource deviceCommands 'Microsoft.EventGrid/namespaces/topicSpaces@2025-02-15' = {
  parent: namespace
  name: 'device-commands'
  properties: {
    description: 'Commands to a device (devices/{id}/commands/{name}); not its own responses one level below.'
    topicTemplates: [
      // `+`, not `#`: devices/{id}/commands/# would also match the device's own
      // devices/{id}/commands/{commandId}/response ("#: which matches zero or more
      // segments at the end of the topic"; "+: which matches a single segment").
      'devices/\${client.authenticationName}/commands/+'
    ]
  }
}

resource deviceBroadcasts 'Microsoft.EventGrid/namespaces/topicSpaces@2025-02-15' = {
  parent: namespace
  name: 'device-broadcasts'
  properties: {
    description: 'Broadcasts to every device, and to the devices of the group in their client attribute `group`.'
    topicTemplates: [
      'broadcast/#'
      // "a topic template area/${client.attributes.area}/telemetry enables only the clients
      // with the client attribute area:section1 to publish on the MQTT topic
      // area/section1/telemetry": a device without a `group` attribute gets no group topic.
      'groups/\${client.attributes.group}/broadcast/#'
    ]
  }
}

// What the function app publishes with HTTP Publish, authorized by its RBAC role
// (EventGrid TopicSpaces Publisher, scoped here: app/rbac.bicep). No permission binding
// names this topic space: no MQTT client may publish or subscribe through it. `+` matches
// exactly one level, so the app cannot publish a device's response
// (devices/{id}/commands/{commandId}/response), telemetry or inference.
resource cloudPublish 'Microsoft.EventGrid/namespaces/topicSpaces@2025-02-15' = {
  parent: namespace
  name: 'cloud-publish'
  properties: {
    description: 'Commands and broadcasts the function app publishes (HTTP Publish, Azure RBAC); no client group is bound.'
    topicTemplates: [
      'devices/+/commands/+'
      'broadcast/+'
      'groups/+/broadcast/+'
    ]
  }
}

resource deviceGroup 'Microsoft.EventGrid/namespaces/clientGroups@2025-02-15' = {
  parent: namespace
  name: deviceClientGroupName
  properties: {
    description: 'Edge devices (clients with attribute role = edge-device).'
    query: 'attributes.role = \'${deviceRoleAttribute}\''
  }
}

resource publishUplink 'Microsoft.EventGrid/namespaces/permissionBindings@2025-02-15' = {
  parent: namespace
  name: 'devices-publish-uplink'
  properties: {
    description: 'Devices publish their own telemetry and inference.'
    clientGroupName: deviceGroup.name
    topicSpaceName: deviceUplink.name
    permission: 'Publisher'
  }
}

resource publishResponses 'Microsoft.EventGrid/namespaces/permissionBindings@2025-02-15' = {
  parent: namespace
  name: 'devices-publish-responses'
  properties: {
    description: 'Devices publish responses to their own commands.'
    clientGroupName: deviceGroup.name
    topicSpaceName: deviceResponses.name
    permission: 'Publisher'
  }
}

resource subscribeCommands 'Microsoft.EventGrid/namespaces/permissionBindings@2025-02-15' = {
  parent: namespace
  name: 'devices-subscribe-commands'
  properties: {
    description: 'Devices subscribe to their own commands.'
    clientGroupName: deviceGroup.name
    topicSpaceName: deviceCommands.name
    permission: 'Subscriber'
  }
}

resource subscribeBroadcasts 'Microsoft.EventGrid/namespaces/permissionBindings@2025-02-15' = {
  parent: namespace
  name: 'devices-subscribe-broadcasts'
  properties: {
    description: 'Devices subscribe to broadcasts to all and to their own group.'
    clientGroupName: deviceGroup.name
    topicSpaceName: deviceBroadcasts.name
    permission: 'Subscriber'
  }
}

// CA-chain authentication: a client without thumbprints presents a certificate one of
// these issued, whose subject names it.
resource deviceCas 'Microsoft.EventGrid/namespaces/caCertificates@2025-02-15' = [
  for ca in caCertificates: {
    parent: namespace
    name: ca.name
    properties: {
      description: 'Issues device certificates (CA-chain client authentication).'
      encodedCertificate: ca.encodedCertificate
    }
  }
]

// Optional device clients: by certificate thumbprint, or by CA chain and subject when
// they list no thumbprints.
resource clients 'Microsoft.EventGrid/namespaces/clients@2025-02-15' = [
  for device in deviceClients: {
    parent: namespace
    name: device.name
    properties: {
      authenticationName: device.name
      description: 'Edge device ${device.name}'
      state: 'Enabled'
      attributes: union(device.?attributes ?? {}, {
        role: deviceRoleAttribute
      })
      clientCertificateAuthentication: empty(device.?thumbprints ?? []) ? {
        validationScheme: 'SubjectMatchesAuthenticationName'
      } : {
        validationScheme: 'ThumbprintMatch'
        allowedThumbprints: device.thumbprints
      }
    }
    dependsOn: [
      deviceCas
      deviceGroup
    ]
  }
]

// ----------------------------------------------------------------------------- dead-letter containers (infra/app/storage.bicep)

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: storageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource lifecycleDeadLetter 'containers' existing = {
      name: lifecycleDeadLetterContainerName
    }

    resource routingDeadLetter 'containers' existing = {
      name: routingDeadLetterContainerName
    }
  }
}

// ----------------------------------------------------------------------------- routing: namespace topic -> Event Hubs

resource routeTopic 'Microsoft.EventGrid/namespaces/topics@2025-02-15' = {
  parent: namespace
  name: routeTopicName
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    publisherType: 'Custom'
    eventRetentionInDays: 1
  }
}

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource targetHubs 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = [
  for route in routes: {
    parent: eventHubNamespace
    name: route.hub
  }
]

// The namespace's identity may send to each target hub (and to no other hub) ...
resource namespaceSendsToHubs 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (route, i) in routes: {
    name: guid(targetHubs[i].id, namespace.id, eventHubsDataSenderRoleId)
    scope: targetHubs[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataSenderRoleId)
      principalId: namespace.identity.principalId
      principalType: 'ServicePrincipal'
      description: 'Event Grid namespace ${name} delivers routed MQTT messages to hub ${route.hub}.'
    }
  }
]

// ... and may write the messages it could not deliver to the routing dead-letter container.
resource namespaceWritesDeadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::routingDeadLetter.id, namespace.id, storageBlobDataContributorRoleId)
  scope: storage::blobService::routingDeadLetter
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: namespace.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid namespace ${name} writes routed MQTT messages it could not deliver.'
  }
}

resource hubSubscriptions 'Microsoft.EventGrid/namespaces/topics/eventSubscriptions@2025-02-15' = [
  for (route, i) in routes: {
    parent: routeTopic
    name: route.subscription
    properties: {
      eventDeliverySchema: 'CloudEventSchemaV1_0'
      filtersConfiguration: {
        includedEventTypes: [
          'MQTT.EventPublished'
        ]
        // Several filters: all must match; several values of one filter: any may.
        filters: [
          {
            // Published by a device (client group edge-devices), not by the app.
            operatorType: 'StringIn'
            key: clientRoleEnrichmentKey
            values: [
              deviceRoleAttribute
            ]
          }
          {
            operatorType: 'StringBeginsWith'
            key: 'subject'
            values: [
              'devices/'
            ]
          }
          {
            operatorType: 'StringEndsWith'
            key: 'subject'
            values: [
              route.suffix
            ]
          }
        ]
      }
      deliveryConfiguration: {
        deliveryMode: 'Push'
        push: {
          maxDeliveryCount: 10
          eventTimeToLive: 'P1D'
          // After the last attempt or the time to live, the message is written to
          // {container}/{namespace}/{topic}/{subscription}/{y}/{m}/{d}/{h}/{guid}.json
          // instead of being dropped (replay: docs/deploy.md).
          deadLetterDestinationWithResourceIdentity: {
            identity: {
              type: 'SystemAssigned'
            }
            deadLetterDestination: {
              endpointType: 'StorageBlob'
              properties: {
                resourceId: storage.id
                blobContainerName: storage::blobService::routingDeadLetter.name
              }
            }
          }
          deliveryWithResourceIdentity: {
            identity: {
              type: 'SystemAssigned'
            }
            destination: {
              endpointType: 'EventHub'
              properties: {
                resourceId: targetHubs[i].id
                deliveryAttributeMappings: [
                  {
                    name: 'PartitionKey'
                    type: 'Dynamic'
                    properties: {
                      sourceField: deviceIdEnrichmentKey
                    }
                  }
                ]
              }
            }
          }
        }
      }
    }
    dependsOn: [
      namespaceSendsToHubs
      namespaceWritesDeadLetters
    ]
  }
]

// Second PUT of the namespace: route every MQTT message to the namespace topic.
module routing 'eventgrid-routing.bicep' = {
  name: '${deployment().name}-routing'
  params: {
    location: location
    tags: tags
    name: namespace.name
    capacity: capacity
    topicSpacesConfiguration: routedTopicSpaces
  }
  // Every other write of the namespace and of its children first: ARM refuses a write
  // of the namespace while one of them is being written (409). The route topic too:
  // routing names it by id (routedTopicSpaces), not by reference.
  dependsOn: [
    routeTopic
    hubSubscriptions
    deviceUplink
    deviceResponses
    deviceCommands
    deviceBroadcasts
    cloudPublish
    deviceGroup
    publishUplink
    publishResponses
    subscribeCommands
    subscribeBroadcasts
    clients
    deviceCas
    systemTopic
    diagnostics
    systemTopicDiagnostics
  ]
}

// ----------------------------------------------------------------------------- client life cycle events

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: systemTopicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: namespace.id
    topicType: 'Microsoft.EventGrid.Namespaces'
  }
}

// The system topic dead-letters undeliverable life cycle events with its identity.
resource systemTopicWritesDeadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::lifecycleDeadLetter.id, systemTopic.id, storageBlobDataContributorRoleId)
  scope: storage::blobService::lifecycleDeadLetter
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: systemTopic.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid system topic ${systemTopicName} writes dead-lettered life cycle events.'
  }
}

// Failures only: allLogs adds a record for every successful MQTT connection and every
// disconnection, which a connect storm of a large fleet turns into a flood against the
// workspace's daily cap that Application Insights shares. Metrics count them instead.
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(logAnalyticsWorkspaceId)) {
  name: 'to-log-analytics'
  scope: namespace
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [for category in [
      'FailedMqttConnections'
      'FailedMqttPublishedMessages'
      'FailedMqttSubscriptionOperations'
      'FailedHttpDataPlaneOperations'
    ]: {
      category: category
      enabled: true
    }]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

// Failed deliveries of life cycle events show in this log (AegDeliveryFailureLogs),
// not only in metrics.
resource systemTopicDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(logAnalyticsWorkspaceId)) {
  name: 'to-log-analytics'
  scope: systemTopic
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'DeliveryFailures'
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
output mqttHostname string = namespace.properties.topicSpacesConfiguration.hostname
output cloudPublishTopicSpaceName string = cloudPublish.name
output deviceClientGroupName string = deviceGroup.name
output routeTopicName string = routeTopic.name
output systemTopicName string = systemTopic.name
output systemTopicId string = systemTopic.id
