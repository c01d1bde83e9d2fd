// Company Activity on Azure: everything the Function App needs, in one resource group per
// environment, rg-<environmentName>, which this deployment creates (subscription scope, the azd
// convention), so `azd down` removes one environment and nothing else.
//
//   az deployment sub create -l <region> -n company-activity-<environmentName> \
//     -f infra/bicep/main.bicep -p infra/bicep/main.parameters.dev.json \
//     [-p usageApiKey=<token> alertWebhookUrl=<url>]
//
// Secrets are never in a parameters file: pass them on the command line as above (they are
// @secure(), so they stay out of the deployment history), or leave them out and set them once
// in Key Vault (see modules/keyvault.bicep). After the first deployment, create the app's SQL
// user (modules/sql.bicep) and publish the code (docs/deploy.md).
//
// Order: the resource group; then monitoring, storage, Service Bus, SQL, Key Vault and the Event
// Grid topic are independent; the Function App needs their names; roles need the two identities;
// the Event Grid subscriptions come last, once the topic's identity may send to Service Bus.

targetScope = 'subscription'

import { sqlAdministratorType } from 'modules/sql.bicep'

@description('Azure region of the resource group and everything in it. Must offer Flex Consumption: az functionapp list-flexconsumption-locations.')
param location string

@description('Name of this deployment\'s environment (azd: AZURE_ENV_NAME). The resource group is rg-<environmentName>, tagged azd-env-name.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Short lowercase prefix of every resource name, letters and digits (e.g. cact).')
@minLength(2)
@maxLength(8)
param name string

@description('Stage: part of every resource name and the environment tag.')
@allowed([
  'dev'
  'test'
  'prod'
])
param environment string = 'dev'

param tags object = {
  application: 'company-activity'
  environment: environment
}

@description('Object id of the deploying user or pipeline: granted the operator roles (modules/roles.bicep). Empty: none.')
param operatorPrincipalId string = ''

@description('Who Azure Monitor mails when a message is dead-lettered or a function fails. Empty: no mail.')
param alertEmail string = ''

@description('What operatorPrincipalId is: User, Group or ServicePrincipal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

// ------------------------------------------------------------------ SQL

@description('Entra administrator of the SQL server (a group of data engineers is a good choice).')
param sqlAdministrator sqlAdministratorType

@description('Database name (SQL_DATABASE).')
param sqlDatabaseName string = 'companyactivity'

@description('Database SKU: serverless General Purpose by default.')
param sqlDatabaseSku object = {
  name: 'GP_S_Gen5_1'
  tier: 'GeneralPurpose'
  family: 'Gen5'
  capacity: 1
}

@description('Minutes idle before the serverless database pauses (-1: never).')
param sqlAutoPauseDelayMinutes int = 60

@description('Optional public IP that may reach SQL to run the CREATE USER step. Empty: none.')
param sqlClientIpAddress string = ''

// ------------------------------------------------------------------ Service Bus

@description('Deliveries before a message is dead-lettered and forwarded to alerts.')
@minValue(1)
@maxValue(100)
param maxDeliveryCount int = 5

// ------------------------------------------------------------------ Key Vault

@description('Key Vault purge protection. Keep it on in prod; off lets a dev vault be purged and its name reused.')
param enablePurgeProtection bool = true

@secure()
@description('Product Usage API bearer token, written to Key Vault as usage-api-key. Empty: leave the vault as it is.')
param usageApiKey string = ''

@secure()
@description('Alert webhook URL, written to Key Vault as alert-webhook-url. Empty: leave the vault as it is.')
param alertWebhookUrl string = ''

// ------------------------------------------------------------------ Function App

@description('Most instances the Function App may scale out to.')
@minValue(40) // Flex Consumption's floor in most regions
@maxValue(1000)
param maximumInstanceCount int = 40

// App settings the code reads (shared/config.py); the defaults are that file's defaults.

@description('USAGE_API_BASE_URL: the Product Usage API root.')
param usageApiBaseUrl string = ''

@description('USAGE_API_TIMEOUT_S')
param usageApiTimeoutS string = '30'

@description('USAGE_API_PAGE_SIZE (at most 1000)')
@minValue(1)
@maxValue(1000)
param usageApiPageSize int = 500

@description('USAGE_API_MAX_PAGES')
@minValue(1)
@maxValue(1000000)
param usageApiMaxPages int = 100000

@description('USAGE_API_MAX_ATTEMPTS')
@minValue(1)
@maxValue(20)
param usageApiMaxAttempts int = 6

@description('USAGE_API_BACKOFF_BASE_S')
param usageApiBackoffBaseS string = '1'

@description('USAGE_API_BACKOFF_MAX_S')
param usageApiBackoffMaxS string = '60'

@description('USAGE_API_UNREACHABLE_S: seconds a fetch keeps trying an API that gives no answer at all')
param usageApiUnreachableS string = '60'

@description('USAGE_API_CONCURRENCY: pages fetched at once when the API reports total_pages')
@minValue(1)
@maxValue(64)
param usageApiConcurrency int = 8

@description('USAGE_API_MAX_RPS: cap on API requests per second of one day\'s fetch, 0 for none')
param usageApiMaxRps string = '0'

@description('USAGE_API_LOOKBACK_DAYS: finished days before yesterday re-checked daily, 0 for none')
@minValue(0)
@maxValue(31)
param usageApiLookbackDays int = 3

@description('USAGE_API_MAX_WAIT_S: longest Retry-After waited for inside a fetch, seconds')
param usageApiMaxWaitS string = '300'

@description('CHURN_MIN_ROLLING_USERS')
@minValue(0)
@maxValue(1000000000)
param churnMinRollingUsers int = 10

@description('CHURN_MAX_CONTACT_AGE_DAYS')
@minValue(0)
@maxValue(36500)
param churnMaxContactAgeDays int = 30

@description('CRM_MAX_SNAPSHOT_AGE_DAYS')
@minValue(0)
@maxValue(366)
param crmMaxSnapshotAgeDays int = 7

@description('ALERT_WEBHOOK_BACKOFF_S')
param alertWebhookBackoffS string = '0.5'

@description('ALERT_REPEAT_WINDOW_S: the same alert is delivered once per this many seconds')
param alertRepeatWindowS string = '3600'

@description('FETCH_SCHEDULE: NCRONTAB schedule of the daily fetch, UTC.')
param fetchSchedule string = '0 30 2 * * *'

// ------------------------------------------------------------------ names

// Tags of the resource group and of every resource in it; azd finds the group by azd-env-name.
var resourceTags = union(tags, { 'azd-env-name': environmentName })

// One resource group per environment: `azd down` deletes it, and with it this environment only.
resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: resourceTags
}

// Globally unique names get a token that is stable for this resource group, prefix and stage.
var token = uniqueString(rg.id, name, environment)
var prefix = toLower(name)
var compact = replace(prefix, '-', '')
var names = {
  logAnalytics: 'log-${prefix}-${environment}'
  appInsights: 'appi-${prefix}-${environment}'
  dataStorage: take('st${compact}d${token}', 24)
  hostStorage: take('st${compact}h${token}', 24)
  serviceBus: 'sb-${prefix}-${environment}-${token}'
  eventGridTopic: 'evgt-${prefix}-${environment}-data'
  sqlServer: 'sql-${prefix}-${environment}-${token}'
  keyVault: take('kv-${compact}-${token}', 24)
  plan: 'asp-${prefix}-${environment}'
  functionApp: 'func-${prefix}-${environment}-${token}'
}

// ------------------------------------------------------------------ modules

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    logAnalyticsName: names.logAnalytics
    appInsightsName: names.appInsights
    tags: resourceTags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    dataAccountName: names.dataStorage
    hostAccountName: names.hostStorage
    tags: resourceTags
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    location: location
    namespaceName: names.serviceBus
    maxDeliveryCount: maxDeliveryCount
    tags: resourceTags
  }
}

module sql 'modules/sql.bicep' = {
  name: 'sql'
  scope: rg
  params: {
    location: location
    serverName: names.sqlServer
    databaseName: sqlDatabaseName
    administrator: sqlAdministrator
    databaseSku: sqlDatabaseSku
    autoPauseDelayMinutes: sqlAutoPauseDelayMinutes
    clientIpAddress: sqlClientIpAddress
    tags: resourceTags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    vaultName: names.keyVault
    enablePurgeProtection: enablePurgeProtection
    usageApiKey: usageApiKey
    alertWebhookUrl: alertWebhookUrl
    tags: resourceTags
  }
}

module eventGridTopic 'modules/eventgrid-topic.bicep' = {
  name: 'eventgrid-topic'
  scope: rg
  params: {
    location: location
    topicName: names.eventGridTopic
    storageAccountName: storage.outputs.dataAccountName
    tags: resourceTags
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    location: location
    planName: names.plan
    appName: names.functionApp
    hostStorageAccountName: storage.outputs.hostAccountName
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    dataStorageAccountName: storage.outputs.dataAccountName
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    sqlServerFqdn: sql.outputs.serverFqdn
    sqlDatabaseName: sql.outputs.databaseName
    usageApiKeySecretUri: keyVault.outputs.usageApiKeySecretUri
    alertWebhookUrlSecretUri: keyVault.outputs.alertWebhookUrlSecretUri
    maximumInstanceCount: maximumInstanceCount
    maxDeliveryCount: maxDeliveryCount
    usageApiBaseUrl: usageApiBaseUrl
    usageApiTimeoutS: usageApiTimeoutS
    usageApiPageSize: usageApiPageSize
    usageApiMaxPages: usageApiMaxPages
    usageApiMaxAttempts: usageApiMaxAttempts
    usageApiBackoffBaseS: usageApiBackoffBaseS
    usageApiBackoffMaxS: usageApiBackoffMaxS
    usageApiUnreachableS: usageApiUnreachableS
    usageApiConcurrency: usageApiConcurrency
    usageApiMaxRps: usageApiMaxRps
    usageApiLookbackDays: usageApiLookbackDays
    usageApiMaxWaitS: usageApiMaxWaitS
    churnMinRollingUsers: churnMinRollingUsers
    churnMaxContactAgeDays: churnMaxContactAgeDays
    crmMaxSnapshotAgeDays: crmMaxSnapshotAgeDays
    alertWebhookBackoffS: alertWebhookBackoffS
    alertRepeatWindowS: alertRepeatWindowS
    fetchSchedule: fetchSchedule
    tags: resourceTags
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    functionAppPrincipalId: functionApp.outputs.principalId
    eventGridPrincipalId: eventGridTopic.outputs.principalId
    hostStorageAccountName: storage.outputs.hostAccountName
    dataStorageAccountName: storage.outputs.dataAccountName
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    keyVaultName: keyVault.outputs.vaultName
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

module alertRules 'modules/alert-rules.bicep' = {
  name: 'alert-rules'
  scope: rg
  params: {
    location: location
    namePrefix: '${prefix}-${environment}'
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    appInsightsName: monitoring.outputs.appInsightsName
    alertEmail: alertEmail
    tags: resourceTags
  }
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    topicName: eventGridTopic.outputs.topicName
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    ingestQueueName: serviceBus.outputs.ingestQueueName
    dataStorageAccountName: storage.outputs.dataAccountName
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
  // The subscriptions deliver and dead-letter with the topic's identity: give it its roles first.
  dependsOn: [
    roles
  ]
}

// ------------------------------------------------------------------ outputs (docs/deploy.md)

output functionAppName string = functionApp.outputs.name
output functionAppHostName string = functionApp.outputs.defaultHostName
output dataStorageAccountName string = storage.outputs.dataAccountName
output hostStorageAccountName string = storage.outputs.hostAccountName
output serviceBusNamespace string = serviceBus.outputs.namespaceName
output serviceBusFullyQualifiedNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output sqlServerFqdn string = sql.outputs.serverFqdn
output sqlDatabaseName string = sql.outputs.databaseName
output keyVaultName string = keyVault.outputs.vaultName

// The same, as azd stores outputs for its hooks (infra/hooks/postprovision.sh, postdeploy.sh).
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_RESOURCE_GROUP string = rg.name
// The tenant the hooks check the az CLI is signed in to (azd sets AZURE_SUBSCRIPTION_ID itself).
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_FUNCTION_APP_HOST_NAME string = functionApp.outputs.defaultHostName
output SQL_SERVER string = sql.outputs.serverFqdn
output SQL_DATABASE string = sql.outputs.databaseName
output KEY_VAULT_NAME string = keyVault.outputs.vaultName
output DATA_STORAGE_ACCOUNT_NAME string = storage.outputs.dataAccountName
