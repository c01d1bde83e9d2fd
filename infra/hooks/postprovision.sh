#!/bin/sh
# azd postprovision: what ARM cannot do, idempotent, so `azd up` can run again at any time.
#   1. the Function App's managed identity becomes a database user (reader and writer);
#   2. the schema (sql/mssql/schema.sql) is applied;
#   3. USAGE_API_KEY / ALERT_WEBHOOK_URL, when set in the azd environment, go to Key Vault;
#   4. the app restarts, so its Key Vault references resolve now, not within 24 hours.
# Needs: az (signed in as the same account as azd), go-sqlcmd, and the azd outputs of
# infra/bicep/main.bicep. Everything that Azure applies with a delay (a firewall rule, a role
# assignment, a paused serverless database resuming) is retried for about five minutes.
# Every az call names azd's subscription (AZURE_SUBSCRIPTION_ID), never the CLI's default; the
# CLI's default tenant must be azd's (AZURE_TENANT_ID), since sqlcmd signs in with its token.
set -eu

: "${AZURE_FUNCTION_APP_NAME:?run through azd: the outputs of main.bicep are missing}"
: "${AZURE_RESOURCE_GROUP:?}" "${SQL_SERVER:?}" "${SQL_DATABASE:?}" "${KEY_VAULT_NAME:?}"
: "${AZURE_SUBSCRIPTION_ID:?}" "${AZURE_TENANT_ID:?}"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

# go-sqlcmd: the legacy ODBC sqlcmd (mssql-tools) has no --authentication-method.
if ! sqlcmd --help 2>&1 | grep -q -- "--authentication-method"; then
  echo "postprovision: go-sqlcmd not found (https://aka.ms/go-sqlcmd); install it and run azd provision again" >&2
  exit 1
fi

# sqlcmd (ActiveDirectoryDefault) takes the az CLI's token, which is for the tenant of the CLI's
# default subscription: it must be the tenant azd deploys to, or every SQL step is refused.
cli_tenant=$(az account show --query tenantId -o tsv 2>/dev/null) || cli_tenant=""
if [ "$cli_tenant" != "$AZURE_TENANT_ID" ]; then
  echo "postprovision: az is signed in to tenant ${cli_tenant:-(none: not signed in)}, azd deploys to tenant $AZURE_TENANT_ID; run: az login --tenant $AZURE_TENANT_ID && az account set --subscription $AZURE_SUBSCRIPTION_ID, then azd provision" >&2
  exit 1
fi

# Run "$@" until it succeeds: 30 tries, 10 s apart.
retry() {
  tries=0
  until "$@"; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
      echo "postprovision: still failing after $tries tries: $1" >&2
      return 1
    fi
    echo "postprovision: not yet (Azure applies firewall rules, roles and a resuming database with a delay); retrying in 10 s" >&2
    sleep 10
  done
}

sql() {
  sqlcmd -S "$SQL_SERVER" -d "$SQL_DATABASE" --authentication-method ActiveDirectoryDefault -b "$@"
}

# SQL is reached from this machine: allow its public IP for the two SQL steps only.
server_name=${SQL_SERVER%%.*}
ip=${SQL_CLIENT_IP_ADDRESS:-$(curl -fsS https://api.ipify.org || true)}
rule=azd-postprovision
if [ -n "$ip" ]; then
  az sql server firewall-rule create --subscription "$AZURE_SUBSCRIPTION_ID" -g "$AZURE_RESOURCE_GROUP" \
    -s "$server_name" -n "$rule" --start-ip-address "$ip" --end-ip-address "$ip" --only-show-errors >/dev/null
  trap 'az sql server firewall-rule delete --subscription "$AZURE_SUBSCRIPTION_ID" -g "$AZURE_RESOURCE_GROUP" -s "$server_name" -n "$rule" --only-show-errors >/dev/null 2>&1 || true' EXIT
fi

echo "postprovision: database user for $AZURE_FUNCTION_APP_NAME"
retry sql -Q "
IF DATABASE_PRINCIPAL_ID(N'$AZURE_FUNCTION_APP_NAME') IS NULL
    CREATE USER [$AZURE_FUNCTION_APP_NAME] FROM EXTERNAL PROVIDER;
ALTER ROLE db_datareader ADD MEMBER [$AZURE_FUNCTION_APP_NAME];
ALTER ROLE db_datawriter ADD MEMBER [$AZURE_FUNCTION_APP_NAME];"

echo "postprovision: schema"
retry sql -i "$repo/sql/mssql/schema.sql"

set_secret() {  # name, value: the value goes through a file, so it is never on a command line
  file=$(mktemp)
  printf '%s' "$2" >"$file"
  status=0
  retry az keyvault secret set --subscription "$AZURE_SUBSCRIPTION_ID" --vault-name "$KEY_VAULT_NAME" -n "$1" \
    --file "$file" --encoding utf-8 --only-show-errors --output none || status=$?
  rm -f "$file"
  return "$status"
}
# A value set with `azd env set-secret` is a reference (akvs://...) to a secret of azd's own, not
# the value: writing it would make the app send the reference as its key. Leave the app's secret
# as it is and say how to set it (docs/deploy.md).
copy_secret() { # <secret name> <variable name> <value>
  case "$3" in
    akvs://*)
      echo "postprovision: $2 is an azd Key Vault reference (azd env set-secret), not the value; $1 left as it is in $KEY_VAULT_NAME: set it there with az keyvault secret set (docs/deploy.md)" >&2
      ;;
    *)
      echo "postprovision: Key Vault secret $1"
      set_secret "$1" "$3"
      ;;
  esac
}
if [ -n "${USAGE_API_KEY:-}" ]; then
  copy_secret usage-api-key USAGE_API_KEY "$USAGE_API_KEY"
fi
if [ -n "${ALERT_WEBHOOK_URL:-}" ]; then
  copy_secret alert-webhook-url ALERT_WEBHOOK_URL "$ALERT_WEBHOOK_URL"
fi

echo "postprovision: restart $AZURE_FUNCTION_APP_NAME (Key Vault references resolve on start)"
az functionapp restart --subscription "$AZURE_SUBSCRIPTION_ID" -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
  --only-show-errors
