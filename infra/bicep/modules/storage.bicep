// Storage: two accounts, both reachable only with Entra ID (no account keys, no SAS).
//
// * The DATA account holds the pipeline's blobs and its run ledger: containers raw, crm-drop,
//   quarantine (contract section 4), the table pipelineruns, the container Event Grid
//   dead-letters undeliverable events to, and the health container GET /api/health probes.
//   Its BlobCreated events start staging (eventgrid*.bicep).
// * The HOST account is the Functions host's own storage (AzureWebJobsStorage: keys, timer
//   leases) and holds the Flex Consumption deployment package container.
//
// Why two: the host needs Storage Blob Data Owner on its storage, which we do not want to give
// the app over the pipeline's data (it gets Blob/Table Data Contributor there); the data
// account's lifecycle rules and events then see only pipeline data; and the host account can be
// thrown away and recreated without touching a single raw page.

@description('Azure region.')
param location string

@description('Name of the data storage account (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param dataAccountName string

@description('Name of the Functions host storage account (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param hostAccountName string

@description('Replication of the data account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param dataSku string = 'Standard_LRS'

@description('Days after its last modification a raw blob moves to the cool tier.')
@minValue(1)
param rawCoolAfterDays int = 30

@description('Blob container in the host account that holds the deployment package (Flex Consumption).')
param deploymentContainerName string = 'app-package'

param tags object = {}

// Fixed by the contract (section 4) and shared/domain/names.py.
var dataContainers = [
  'raw'
  'crm-drop'
  'quarantine'
]
var ledgerTable = 'pipelineruns'

// Where Event Grid puts events it could not deliver to Service Bus (see eventgrid.bicep).
var deadLetterContainerName = 'eventgrid-deadletter'

// GET /api/health writes, reads and deletes a probe blob under health/ here (shared/domain/names.py
// HEALTH_CONTAINER): no event subscription watches it (eventgrid.bicep watches raw/usage/ and
// crm-drop/ only) and nothing lists it. The app's Storage Blob Data Contributor covers it.
var healthContainerName = 'health'

// ---------------------------------------------------------------- data account

resource data 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: dataAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: dataSku
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false // identity only: the app, Event Grid and people all use Entra ID
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    // No VNet in this deployment (Flex Consumption without integration): the network stays
    // open and identity plus RBAC are the guard.
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource dataBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: data
  name: 'default'
  properties: {
    // A week to undo an accidental delete or overwrite of a raw page or a CRM drop.
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in dataContainers: {
    parent: dataBlobs
    name: container
    properties: {
      publicAccess: 'None'
    }
  }
]

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: dataBlobs
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource healthContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: dataBlobs
  name: healthContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource dataTables 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: data
  name: 'default'
}

// The run ledger (compare-and-swap on etags; see shared/ports.py RunLedger).
resource ledger 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: dataTables
  name: ledgerTable
}

// Raw pages are read again only for a resume or a replay; after a month they can be cool.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: data
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'raw-to-cool'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                'raw/'
              ]
            }
            actions: {
              baseBlob: {
                tierToCool: {
                  daysAfterModificationGreaterThan: rawCoolAfterDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

// ---------------------------------------------------------------- host account

resource host 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: hostAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS' // host state is disposable: keys and leases are recreated
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false // AzureWebJobsStorage__accountName: identity-based host storage
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource hostBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: host
  name: 'default'
}

// Flex Consumption reads the app's package from here; it must exist before the app is created.
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobs
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output dataAccountName string = data.name
output dataAccountId string = data.id
output hostAccountName string = host.name
output hostBlobEndpoint string = host.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
output deadLetterContainerName string = deadLetterContainer.name
