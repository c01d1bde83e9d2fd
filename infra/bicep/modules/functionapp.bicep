// The Function App: Flex Consumption (FC1, Linux), Python 3.11, the code in function_app.py.
//
// It has a system-assigned managed identity and uses it for everything: host storage, the data
// account, Service Bus, Azure SQL and Key Vault (roles.bicep; SQL by T-SQL, see sql.bicep).
// So its app settings hold names and endpoints, and the two secrets are Key Vault references.

@description('Azure region (must offer Flex Consumption).')
param location string

@description('Flex Consumption plan name.')
param planName string

@description('Function App name (globally unique; also the SQL user name of its identity).')
param appName string

@description('Functions host storage account (AzureWebJobsStorage, identity-based).')
param hostStorageAccountName string

@description('Blob container in the host account for the deployment package.')
param deploymentContainerName string

@description('Application Insights component the app reports to.')
param appInsightsName string

@description('Data storage account: raw, crm-drop, quarantine, pipelineruns.')
param dataStorageAccountName string

@description('<namespace>.servicebus.windows.net')
param serviceBusFullyQualifiedNamespace string

@description('Azure SQL server FQDN, <server>.database.windows.net.')
param sqlServerFqdn string

@description('Azure SQL database name.')
param sqlDatabaseName string

@description('Versionless Key Vault URI of the usage-api-key secret.')
param usageApiKeySecretUri string

@description('Versionless Key Vault URI of the alert-webhook-url secret.')
param alertWebhookUrlSecretUri string

@description('Most instances Flex Consumption may scale out to.')
@minValue(40) // Flex Consumption's floor in most regions
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of one instance.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('The queues\' maxDeliveryCount (servicebus.bicep), passed on as MAX_DELIVERY_COUNT.')
@minValue(1)
@maxValue(100)
param maxDeliveryCount int = 5

// Settings the code reads (shared/config.py). Defaults are that file's defaults;
// tests/infra/test_bicep.py checks they stay equal. Decimals are strings: Bicep has no decimal type.

@description('Product Usage API root (USAGE_API_BASE_URL).')
param usageApiBaseUrl string = ''

@description('Read timeout of one API request, seconds (USAGE_API_TIMEOUT_S).')
param usageApiTimeoutS string = '30'

@description('Records per page asked for, at most 1000 (USAGE_API_PAGE_SIZE).')
@minValue(1)
@maxValue(1000)
param usageApiPageSize int = 500

@description('Page cap for one day (USAGE_API_MAX_PAGES).')
@minValue(1)
@maxValue(1000000)
param usageApiMaxPages int = 100000

@description('Attempts per page before the run fails (USAGE_API_MAX_ATTEMPTS).')
@minValue(1)
@maxValue(20)
param usageApiMaxAttempts int = 6

@description('Exponential backoff base, seconds (USAGE_API_BACKOFF_BASE_S).')
param usageApiBackoffBaseS string = '1'

@description('Exponential backoff cap, seconds (USAGE_API_BACKOFF_MAX_S).')
param usageApiBackoffMaxS string = '60'

@description('Seconds a day\'s fetch keeps trying an API that gives no answer at all before it fails with one alert (USAGE_API_UNREACHABLE_S).')
param usageApiUnreachableS string = '60'

@description('Pages fetched at once when the API reports total_pages (USAGE_API_CONCURRENCY).')
@minValue(1)
@maxValue(64)
param usageApiConcurrency int = 8

@description('Cap on API requests per second of one day\'s fetch, 0 for none; a 429 slows the fetch down either way (USAGE_API_MAX_RPS).')
param usageApiMaxRps string = '0'

@description('Finished days before yesterday the daily timer re-checks against the API, 0 to turn it off (USAGE_API_LOOKBACK_DAYS).')
@minValue(0)
@maxValue(31)
param usageApiLookbackDays int = 3

@description('Longest Retry-After waited for inside a fetch, seconds; a longer one reschedules the fetch (USAGE_API_MAX_WAIT_S).')
param usageApiMaxWaitS string = '300'

@description('Churn threshold: rolling 7-day users (CHURN_MIN_ROLLING_USERS).')
@minValue(0)
@maxValue(1000000000)
param churnMinRollingUsers int = 10

@description('Churn threshold: days since last contact (CHURN_MAX_CONTACT_AGE_DAYS).')
@minValue(0)
@maxValue(36500)
param churnMaxContactAgeDays int = 30

@description('Effective CRM snapshot age limit, days (CRM_MAX_SNAPSHOT_AGE_DAYS).')
@minValue(0)
@maxValue(366)
param crmMaxSnapshotAgeDays int = 7

@description('Backoff base between webhook attempts, seconds (ALERT_WEBHOOK_BACKOFF_S).')
param alertWebhookBackoffS string = '0.5'

@description('The same alert is delivered once per this many seconds (ALERT_REPEAT_WINDOW_S).')
param alertRepeatWindowS string = '3600'

@description('NCRONTAB schedule of the daily fetch timer, UTC (FETCH_SCHEDULE).')
param fetchSchedule string = '0 30 2 * * *'

param tags object = {}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  // azd deploys the `api` service of azure.yaml to the resource carrying this tag.
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      // The app settings are the `appSettings` resource below, not a list here.
    }
    functionAppConfig: {
      deployment: {
        storage: {
          // The package container in the host account, read with the app's own identity.
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// ------------------------------------------------------------------ app settings: BEGIN
// Every app setting of the Function App, and nothing else, is a key of `properties` here
// (tests/infra/test_bicep.py reads the keys). A Microsoft.Web/sites/config 'appsettings' child
// resource, as Azure Verified Modules and Microsoft's Flex Consumption samples do: its
// `properties` is a plain object whose values may be known only during the deployment (the
// Application Insights connection string). A for-expression over such an object cannot compile
// (BCP178): a loop's source must be known when the deployment starts
// (tests/infra/test_bicep_deploy_time.py). This resource replaces the whole set of app settings
// on every deployment, as siteConfig.appSettings would. Flex Consumption sets the runtime in
// functionAppConfig, so FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION are not here.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    // Host storage through the identity (Storage Blob Data Owner on the host account).
    AzureWebJobsStorage__accountName: hostStorage.name
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    // The worker exports logs and traces with OpenTelemetry (azure-monitor-opentelemetry in
    // requirements.txt, host.json telemetryMode): each log line's stage, date and run_id
    // arrive as customDimensions.
    PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'

    // Service Bus through the identity: function_app.py binds connection="ServiceBusConnection".
    ServiceBusConnection__fullyQualifiedNamespace: serviceBusFullyQualifiedNamespace

    // Where the data lives; each one set switches its port to the Azure adapter (shared/bootstrap.py).
    DATA_STORAGE_ACCOUNT_NAME: dataStorageAccountName
    SQL_SERVER: sqlServerFqdn
    SQL_DATABASE: sqlDatabaseName

    // Product Usage API. The key is a Key Vault reference, resolved by the platform.
    USAGE_API_BASE_URL: usageApiBaseUrl
    USAGE_API_KEY: '@Microsoft.KeyVault(SecretUri=${usageApiKeySecretUri})'
    USAGE_API_TIMEOUT_S: usageApiTimeoutS
    USAGE_API_PAGE_SIZE: string(usageApiPageSize)
    USAGE_API_MAX_PAGES: string(usageApiMaxPages)
    USAGE_API_MAX_ATTEMPTS: string(usageApiMaxAttempts)
    USAGE_API_BACKOFF_BASE_S: usageApiBackoffBaseS
    USAGE_API_BACKOFF_MAX_S: usageApiBackoffMaxS
    USAGE_API_UNREACHABLE_S: usageApiUnreachableS
    USAGE_API_CONCURRENCY: string(usageApiConcurrency)
    USAGE_API_MAX_RPS: usageApiMaxRps
    USAGE_API_LOOKBACK_DAYS: string(usageApiLookbackDays)
    USAGE_API_MAX_WAIT_S: usageApiMaxWaitS

    // Rules.
    CHURN_MIN_ROLLING_USERS: string(churnMinRollingUsers)
    CHURN_MAX_CONTACT_AGE_DAYS: string(churnMaxContactAgeDays)
    CRM_MAX_SNAPSHOT_AGE_DAYS: string(crmMaxSnapshotAgeDays)

    // Alerts. The webhook URL is a secret (its path is the credential): a Key Vault reference.
    ALERT_WEBHOOK_URL: '@Microsoft.KeyVault(SecretUri=${alertWebhookUrlSecretUri})'
    ALERT_WEBHOOK_BACKOFF_S: alertWebhookBackoffS
    ALERT_REPEAT_WINDOW_S: alertRepeatWindowS
    MAX_DELIVERY_COUNT: string(maxDeliveryCount)

    // The daily timer (function_app.py: schedule="%FETCH_SCHEDULE%").
    FETCH_SCHEDULE: fetchSchedule
  }
}
// ------------------------------------------------------------------ app settings: END

output name string = site.name
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
