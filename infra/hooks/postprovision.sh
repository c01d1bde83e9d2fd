#!/bin/sh
# azd postprovision: what ARM cannot do, idempotent, so `azd up` can run again at any time.
#   1. the Function App's managed identity becomes a database user (reader and writer);
#   2. the schema (sql/mssql/schema.sql) is applied;
#   3. USAGE_API_KEY / ALERT_WEBHOOK_URL, when set in the azd environment, go to Key Vault;
#   4. the app restarts, so its Key Vault references resolve now, not within 24 hours.
# Needs: az (logged in), sqlcmd (go-sqlcmd), and the azd outputs of infra/bicep/main.bicep.
set -eu

: "${AZURE_FUNCTION_APP_NAME:?run through azd: the outputs of main.bicep are missing}"
: "${AZURE_RESOURCE_GROUP:?}" "${SQL_SERVER:?}" "${SQL_DATABASE:?}" "${KEY_VAULT_NAME:?}"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

if ! command -v sqlcmd >/dev/null 2>&1; then
  echo "postprovision: sqlcmd not found; install go-sqlcmd (https://aka.ms/go-sqlcmd) and run azd provision again" >&2
  exit 1
fi

# SQL is reached from this machine: allow its public IP for the two SQL steps only.
server_name=${SQL_SERVER%%.*}
ip=${SQL_CLIENT_IP_ADDRESS:-$(curl -fsS https://api.ipify.org || true)}
rule=azd-postprovision
if [ -n "$ip" ]; then
  az sql server firewall-rule create -g "$AZURE_RESOURCE_GROUP" -s "$server_name" -n "$rule" \
    --start-ip-address "$ip" --end-ip-address "$ip" --only-show-errors >/dev/null
  trap 'az sql server firewall-rule delete -g "$AZURE_RESOURCE_GROUP" -s "$server_name" -n "$rule" --only-show-errors >/dev/null 2>&1 || true' EXIT
fi

echo "postprovision: database user for $AZURE_FUNCTION_APP_NAME"
sqlcmd -S "$SQL_SERVER" -d "$SQL_DATABASE" --authentication-method ActiveDirectoryDefault -b -Q "
IF DATABASE_PRINCIPAL_ID(N'$AZURE_FUNCTION_APP_NAME') IS NULL
    CREATE USER [$AZURE_FUNCTION_APP_NAME] FROM EXTERNAL PROVIDER;
ALTER ROLE db_datareader ADD MEMBER [$AZURE_FUNCTION_APP_NAME];
ALTER ROLE db_datawriter ADD MEMBER [$AZURE_FUNCTION_APP_NAME];"

echo "postprovision: schema"
sqlcmd -S "$SQL_SERVER" -d "$SQL_DATABASE" --authentication-method ActiveDirectoryDefault -b -i "$repo/sql/mssql/schema.sql"

if [ -n "${USAGE_API_KEY:-}" ]; then
  echo "postprovision: Key Vault secret usage-api-key"
  az keyvault secret set --vault-name "$KEY_VAULT_NAME" -n usage-api-key --value "$USAGE_API_KEY" --only-show-errors >/dev/null
fi
if [ -n "${ALERT_WEBHOOK_URL:-}" ]; then
  echo "postprovision: Key Vault secret alert-webhook-url"
  az keyvault secret set --vault-name "$KEY_VAULT_NAME" -n alert-webhook-url --value "$ALERT_WEBHOOK_URL" --only-show-errors >/dev/null
fi

echo "postprovision: restart $AZURE_FUNCTION_APP_NAME (Key Vault references resolve on start)"
az functionapp restart -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" --only-show-errors
