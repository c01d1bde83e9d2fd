// Azure SQL: the warehouse (stg.*, analytics.company_daily_activity).
//
// Entra-only authentication: the server has no SQL login and no password. The administrator is
// an Entra user, group (recommended: the data engineers) or application. The Function App
// connects with its managed identity (SQL_SERVER + SQL_DATABASE, no connection string).
//
// The app's identity is not a database user until the Entra administrator creates it, once,
// connected to the database (not master), with the Function App's name (main.bicep output
// functionAppName) as the user name:
//
//   CREATE USER [<functionAppName>] FROM EXTERNAL PROVIDER;
//   ALTER ROLE db_datareader ADD MEMBER [<functionAppName>];
//   ALTER ROLE db_datawriter ADD MEMBER [<functionAppName>];
//   ALTER ROLE db_ddladmin ADD MEMBER [<functionAppName>];  -- only if the app applies sql/mssql/schema.sql itself
//
// ARM cannot run T-SQL, so this stays a documented step (docs/deploy.md).

@export()
@description('The Entra administrator of the SQL server.')
type sqlAdministratorType = {
  @description('Display name of the user, group or application (the login name shown in SQL).')
  login: string

  @description('Object id of the user or group (the administrator SID).')
  objectId: string

  @description('What the administrator is.')
  principalType: 'User' | 'Group' | 'Application'
}

@description('Azure region.')
param location string

@description('Logical server name (lowercase, globally unique).')
@minLength(1)
@maxLength(63)
param serverName string

@description('Database name.')
param databaseName string

@description('The Entra administrator; nobody else can sign in until users are created in the database.')
param administrator sqlAdministratorType

@description('Database SKU. The default is serverless General Purpose, Gen5, at most 1 vCore.')
param databaseSku object = {
  name: 'GP_S_Gen5_1'
  tier: 'GeneralPurpose'
  family: 'Gen5'
  capacity: 1
}

@description('Minutes without connections before a serverless database pauses (-1: never; at least 15 when set).')
param autoPauseDelayMinutes int = 60

@description('Smallest vCore count a serverless database scales down to. A string because Bicep has no decimal type.')
param minCapacity string = '0.5'

@description('Largest database size in GB.')
@minValue(1)
param maxSizeGB int = 32

@description('Optional public IP address of an engineer or runner that runs the T-SQL above. Empty: no rule.')
param clientIpAddress string = ''

param tags object = {}

resource server 'Microsoft.Sql/servers@2023-08-01' = {
  name: serverName
  location: location
  tags: tags
  properties: {
    version: '12.0'
    minimalTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    administrators: {
      administratorType: 'ActiveDirectory'
      azureADOnlyAuthentication: true
      login: administrator.login
      sid: administrator.objectId
      principalType: administrator.principalType
      tenantId: subscription().tenantId
    }
  }
}

// Serverless: the pipeline writes once a day and analysts read during working hours, so the
// database pauses at night and costs storage only.
resource database 'Microsoft.Sql/servers/databases@2023-08-01' = {
  parent: server
  name: databaseName
  location: location
  tags: tags
  sku: databaseSku
  properties: {
    autoPauseDelay: autoPauseDelayMinutes
    minCapacity: json(minCapacity)
    maxSizeBytes: maxSizeGB * 1024 * 1024 * 1024
    zoneRedundant: false
  }
}

// 0.0.0.0 - 0.0.0.0 is Azure's "allow Azure services" rule. Flex Consumption without a VNet has
// no fixed outbound addresses, so this is how the Function App gets through; Entra-only
// authentication is what keeps everyone else out.
resource allowAzureServices 'Microsoft.Sql/servers/firewallRules@2023-08-01' = {
  parent: server
  name: 'AllowAllWindowsAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource allowClient 'Microsoft.Sql/servers/firewallRules@2023-08-01' = if (!empty(clientIpAddress)) {
  parent: server
  name: 'AllowDeployerClient'
  properties: {
    startIpAddress: clientIpAddress
    endIpAddress: clientIpAddress
  }
}

output serverName string = server.name
output serverFqdn string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
