// Event Grid subscriptions: which new blobs start staging, delivered to the ingest-events queue.
//
// Exactly the blobs shared/domain/blob_events.wanted() accepts:
//   raw/usage/<date>/<run>/manifest.json   (the manifest is written last: its pages are all there)
//   crm-drop/<any file>                     (a CRM snapshot drop)
//
// One subscription cannot say (A and B) or C: its subject prefix and suffix are single values,
// and advanced filters are AND-ed with each other. So there are two subscriptions, one per path,
// both delivering to the same queue. Each also requires data.api to be one of the operations
// that finish a blob (shared/domain/blob_events.FINISHING_APIS), so an ADLS CreateFile or an
// unfinished write never starts staging.
//
// Delivery and dead-lettering use the system topic's managed identity (roles.bicep grants it
// Azure Service Bus Data Sender and Storage Blob Data Contributor on the dead-letter container).

@description('The system topic on the data account (eventgrid-topic.bicep).')
param topicName string

@description('Service Bus namespace name.')
param serviceBusNamespaceName string

@description('The queue the loaders listen on.')
param ingestQueueName string = 'ingest-events'

@description('The data storage account (holds the dead-letter container).')
param dataStorageAccountName string

@description('Container for events Event Grid could not deliver within the retry policy.')
param deadLetterContainerName string

@description('Attempts before an event is dead-lettered.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

// Blob operations that finish a blob; mirrors shared/domain/blob_events.FINISHING_APIS.
var finishingApis = [
  'PutBlob'
  'PutBlockList'
  'CopyBlob'
  'FlushWithClose'
]

var subscriptions = [
  {
    name: 'usage-manifests'
    subjectBeginsWith: '/blobServices/default/containers/raw/blobs/usage/'
    subjectEndsWith: '/manifest.json'
    extraFilters: []
  }
  {
    name: 'crm-drops'
    subjectBeginsWith: '/blobServices/default/containers/crm-drop/blobs/'
    subjectEndsWith: '' // any file name
    // A name ending in / is a folder marker, not a file (wanted() skips it too).
    extraFilters: [
      {
        operatorType: 'StringNotEndsWith'
        key: 'subject'
        values: [
          '/'
        ]
      }
    ]
  }
]

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: topicName
}

resource sbNamespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName

  resource ingestQueue 'queues' existing = {
    name: ingestQueueName
  }
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageAccountName
}

resource blobCreated 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = [
  for sub in subscriptions: {
    parent: topic
    name: sub.name
    properties: {
      eventDeliverySchema: 'EventGridSchema' // what shared/domain/blob_events.parse_event reads
      deliveryWithResourceIdentity: {
        identity: {
          type: 'SystemAssigned'
        }
        destination: {
          endpointType: 'ServiceBusQueue'
          properties: {
            resourceId: sbNamespace::ingestQueue.id
            // The message id is the event id (stable across Event Grid retries), so the
            // queue's duplicate detection drops a redelivered event, as the local bus does.
            deliveryAttributeMappings: [
              {
                name: 'MessageId'
                type: 'Dynamic'
                properties: {
                  sourceField: 'id'
                }
              }
            ]
          }
        }
      }
      filter: {
        includedEventTypes: [
          'Microsoft.Storage.BlobCreated'
        ]
        subjectBeginsWith: sub.subjectBeginsWith
        subjectEndsWith: sub.subjectEndsWith
        isSubjectCaseSensitive: true
        advancedFilters: concat(
          [
            {
              operatorType: 'StringIn'
              key: 'data.api'
              values: finishingApis
            }
          ],
          sub.extraFilters
        )
      }
      retryPolicy: {
        maxDeliveryAttempts: maxDeliveryAttempts
        eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
      }
      // An event that still cannot reach Service Bus lands here instead of being dropped;
      // re-run the day (or re-drop the CRM file) once Service Bus is back.
      deadLetterWithResourceIdentity: {
        identity: {
          type: 'SystemAssigned'
        }
        deadLetterDestination: {
          endpointType: 'StorageBlob'
          properties: {
            resourceId: dataStorage.id
            blobContainerName: deadLetterContainerName
          }
        }
      }
    }
  }
]

output subscriptionNames array = [for (sub, i) in subscriptions: blobCreated[i].name]
