// Role assignments: what each managed identity may do, and nothing more.
//
// Function App identity
//   host account   Storage Blob Data Owner         AzureWebJobsStorage (keys, leases) and the
//                                                   Flex Consumption deployment container
//   data account   Storage Blob Data Contributor   raw, crm-drop, quarantine, health (its probe)
//                  Storage Table Data Contributor  the pipelineruns ledger
//   Service Bus    Azure Service Bus Data Sender   the app sends fetch, transform and alert messages
//                  Azure Service Bus Data Receiver the queue triggers
//   Key Vault      Key Vault Secrets User          the two Key Vault references
//   Azure SQL      not here: a database user made by T-SQL (sql.bicep)
//
// Event Grid system topic identity
//   Service Bus    Azure Service Bus Data Sender   delivers BlobCreated to ingest-events
//   dead-letter container (data account)
//                  Storage Blob Data Contributor   writes undeliverable events
//
// Service Bus note: with Data Receiver the scale controller cannot read queue lengths, so
// scale-out follows incoming messages less precisely. Azure Service Bus Data Owner would fix
// that but also lets the app delete queues; at one run a day we keep least privilege.
//
// Operator (optional: operatorPrincipalId, the person or pipeline that deploys; azd passes the
// signed-in user) -- what the deploy walkthrough and the runbook need:
//   Key Vault      Key Vault Secrets Officer       set usage-api-key and alert-webhook-url
//   data account   Storage Blob Data Contributor   drop CRM files, read raw pages and quarantine
//                  Storage Table Data Reader       read the run ledger
//   Service Bus    Azure Service Bus Data Receiver peek dead letters
//
// Names are guid(scope, principal, role): stable across deployments, unique per assignment.

@description('Principal id of the Function App\'s system-assigned identity.')
param functionAppPrincipalId string

@description('Principal id of the Event Grid system topic\'s system-assigned identity.')
param eventGridPrincipalId string

param hostStorageAccountName string
param dataStorageAccountName string
param deadLetterContainerName string
param serviceBusNamespaceName string
param keyVaultName string

@description('Object id of the deploying user or pipeline, granted the operator roles above. Empty: none.')
param operatorPrincipalId string = ''

@description('User, Group or ServicePrincipal: what operatorPrincipalId is.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

// Built-in role definition ids (the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39' // Azure Service Bus Data Sender
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0' // Azure Service Bus Data Receiver
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7' // Key Vault Secrets Officer
  storageTableDataReader: '76199698-9eea-4c19-bc75-cec21354c6b6' // Storage Table Data Reader
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageAccountName

  resource blobs 'blobServices' existing = {
    name: 'default'

    resource deadLetters 'containers' existing = {
      name: deadLetterContainerName
    }
  }
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// ------------------------------------------------------------------ Function App identity

resource appHostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, functionAppPrincipalId, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: functionAppPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Function App: host storage and deployment package'
  }
}

resource appDataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in [
    roles.storageBlobDataContributor
    roles.storageTableDataContributor
  ]: {
    name: guid(dataStorage.id, functionAppPrincipalId, roleId)
    scope: dataStorage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: functionAppPrincipalId
      principalType: 'ServicePrincipal'
      description: 'Function App: pipeline blobs and run ledger'
    }
  }
]

resource appServiceBusRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in [
    roles.serviceBusDataSender
    roles.serviceBusDataReceiver
  ]: {
    name: guid(serviceBus.id, functionAppPrincipalId, roleId)
    scope: serviceBus
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: functionAppPrincipalId
      principalType: 'ServicePrincipal'
      description: 'Function App: send to and receive from the pipeline queues'
    }
  }
]

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, functionAppPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: functionAppPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Function App: Key Vault references (usage-api-key, alert-webhook-url)'
  }
}

// ------------------------------------------------------------------ Event Grid identity

resource eventGridSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(serviceBus.id, eventGridPrincipalId, roles.serviceBusDataSender)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: eventGridPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid system topic: deliver BlobCreated to ingest-events'
  }
}

resource eventGridDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorage::blobs::deadLetters.id, eventGridPrincipalId, roles.storageBlobDataContributor)
  scope: dataStorage::blobs::deadLetters
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: eventGridPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid system topic: dead-letter undeliverable events'
  }
}

// ------------------------------------------------------------------ operator (optional)

var withOperator = !empty(operatorPrincipalId)

resource operatorSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withOperator) {
  name: guid(vault.id, operatorPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    description: 'Operator: set the pipeline secrets'
  }
}

resource operatorDataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in (withOperator ? [roles.storageBlobDataContributor, roles.storageTableDataReader] : []): {
    name: guid(dataStorage.id, operatorPrincipalId, roleId)
    scope: dataStorage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: operatorPrincipalId
      principalType: operatorPrincipalType
      description: 'Operator: drop CRM files, read raw pages, quarantine and the run ledger'
    }
  }
]

resource operatorServiceBusReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withOperator) {
  name: guid(serviceBus.id, operatorPrincipalId, roles.serviceBusDataReceiver)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    description: 'Operator: peek dead letters'
  }
}
