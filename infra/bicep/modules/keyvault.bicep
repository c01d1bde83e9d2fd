// Key Vault: the pipeline's two secrets, the Product Usage API key and the alert webhook URL
// (a webhook URL's path is its secret). The Function App reads them through Key Vault
// references in its app settings (functionapp.bicep), never as clear text.
//
// RBAC authorization, not access policies: the app gets Key Vault Secrets User (roles.bicep).
//
// A secret is written only when its value is passed to the deployment. A deployment without it
// leaves the vault as it is, so a secret set once by hand
// (az keyvault secret set --vault-name <vault> --name usage-api-key --value ...) survives
// every later deployment.

@description('Azure region.')
param location string

@description('Vault name (3-24 letters, digits and hyphens, globally unique).')
@minLength(3)
@maxLength(24)
param vaultName string

@description('Purge protection: a deleted vault or secret cannot be purged before the retention ends. Cannot be turned off once on.')
param enablePurgeProtection bool = true

@description('Days a deleted vault or secret can be recovered.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@secure()
@description('Product Usage API bearer token. Empty: the secret usage-api-key is not written.')
param usageApiKey string = ''

@secure()
@description('Alert webhook URL (Teams/Slack). Empty: the secret alert-webhook-url is not written.')
param alertWebhookUrl string = ''

param tags object = {}

var usageApiKeySecretName = 'usage-api-key'
var alertWebhookUrlSecretName = 'alert-webhook-url'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // The API accepts true or nothing: false is rejected once purge protection was ever on.
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource usageApiKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(usageApiKey)) {
  parent: vault
  name: usageApiKeySecretName
  properties: {
    value: usageApiKey
    contentType: 'text/plain'
  }
}

resource alertWebhookUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(alertWebhookUrl)) {
  parent: vault
  name: alertWebhookUrlSecretName
  properties: {
    value: alertWebhookUrl
    contentType: 'text/uri-list'
  }
}

output vaultName string = vault.name
// Versionless secret URIs: the app follows a new secret version without a redeployment.
output usageApiKeySecretUri string = '${vault.properties.vaultUri}secrets/${usageApiKeySecretName}'
output alertWebhookUrlSecretUri string = '${vault.properties.vaultUri}secrets/${alertWebhookUrlSecretName}'
