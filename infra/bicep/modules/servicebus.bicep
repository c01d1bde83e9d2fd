// Service Bus: the four queues of the pipeline (contract section 4, shared/domain/names.py).
//
//   fetch-requests  timer / replay / backfill -> fetch
//   ingest-events   Event Grid BlobCreated    -> usage and CRM loaders
//   transform       loaders                   -> fan-in, quality gate, build
//   alerts          everything above, and every other queue's dead letters -> alert function
//
// Standard tier: Basic has neither duplicate detection nor auto-forwarding, and both matter.
// Local (SAS) auth is off: the Function App and Event Grid use their managed identities
// (roles.bicep), so no connection string with a key exists anywhere.

@description('Azure region.')
param location string

@description('Namespace name (6-50 characters, globally unique).')
@minLength(6)
@maxLength(50)
param namespaceName string

@description('Deliveries before a message is dead-lettered (and so forwarded to alerts). The Function App gets the same value as MAX_DELIVERY_COUNT.')
@minValue(1)
@maxValue(100)
param maxDeliveryCount int = 5

@description('How long an unprocessed message may wait before it expires (and is dead-lettered).')
param messageTimeToLive string = 'P14D'

param tags object = {}

// 5 minutes is the longest lock Service Bus allows; the host renews it for up to
// maxAutoLockRenewalDuration (host.json: 10 minutes, the functionTimeout).
var lockDuration = 'PT5M'

// Message ids are chosen so that a repeat within this window is the same message
// (docs/architecture.md, "Messages and alerts"); Event Grid event ids are stable too, and
// Event Grid retries an event for up to 24 hours (eventgrid.bicep), so the window is a day.
var duplicateDetectionWindow = 'P1D'

var alertsQueueName = 'alerts'

// These forward their dead letters to alerts.
var workQueueNames = [
  'fetch-requests'
  'ingest-events'
  'transform'
]

resource sbNamespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

// The alerts queue's own dead letters stay where they are (terminal): forwarding them to
// itself would loop. Read them with Service Bus Explorer when an alert could not be delivered.
resource alerts 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: sbNamespace
  name: alertsQueueName
  properties: {
    lockDuration: lockDuration
    maxDeliveryCount: maxDeliveryCount
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    defaultMessageTimeToLive: messageTimeToLive
    deadLetteringOnMessageExpiration: true
    requiresSession: false
    enablePartitioning: false
  }
}

// Referencing alerts.name makes each of these depend on the alerts queue, which must exist
// before a queue can forward to it.
resource workQueues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [
  for queueName in workQueueNames: {
    parent: sbNamespace
    name: queueName
    properties: {
      lockDuration: lockDuration
      maxDeliveryCount: maxDeliveryCount
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
      defaultMessageTimeToLive: messageTimeToLive
      deadLetteringOnMessageExpiration: true
      forwardDeadLetteredMessagesTo: alerts.name
      requiresSession: false // Event Grid cannot deliver to session-enabled queues
      enablePartitioning: false
    }
  }
]

output namespaceName string = sbNamespace.name
// <namespace>.servicebus.windows.net, taken from the endpoint so it is right in every cloud.
output fullyQualifiedNamespace string = split(split(split(sbNamespace.properties.serviceBusEndpoint, '://')[1], '/')[0], ':')[0]
// The ingest-events queue (index 1 above) is Event Grid's destination.
output ingestQueueName string = workQueues[1].name
