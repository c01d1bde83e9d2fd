// Event Grid system topic on the data storage account: the source of the BlobCreated events
// that start staging. Its system-assigned identity delivers them to Service Bus (the namespace
// has no SAS keys) and dead-letters into the data account.
//
// A separate module from the subscriptions (eventgrid.bicep) because the identity must hold its
// roles (roles.bicep) before a subscription that delivers with it is created, and the roles
// need the identity: topic -> roles -> subscriptions.
// An account can have only one system topic; delete one made by hand (portal) before deploying.

@description('Azure region (the storage account\'s).')
param location string

@description('System topic name.')
param topicName string

@description('The data storage account whose blob events the topic publishes.')
param storageAccountName string

param tags object = {}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: topicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output topicName string = topic.name
output principalId string = topic.identity.principalId
