#!/bin/sh
# azd postdeploy, the last step of `azd up` (and of `azd deploy`): asks the published app to
# check, from inside and with its own identity, every piece it depends on (GET /api/health,
# docs/contract.md section 8), prints each check, and fails the command with the failing check's
# line. Only this step can show what exists nowhere but on Azure: the ODBC driver on a Flex
# Consumption worker, the app's roles, its Key Vault references, the API key (docs/deploy.md).
#
# While the app starts, no answer, or a platform error page instead of the health JSON, is
# retried (HEALTH_TRIES, default 30, HEALTH_RETRY_S apart, default 10 s: about five minutes). A
# health answer whose status is "failing" is final once it has said so HEALTH_FAILING_TRIES
# times (default 3), which gives a new role assignment half a minute more to apply.
#
# The function key is fetched with az (pinned to azd's subscription) and handed to curl on its
# standard input as the x-functions-key header, so it is on no command line, in no URL, and never
# printed. Each request may take 90 s: the app answers within its slowest check (65 s at most).
set -eu

: "${AZURE_FUNCTION_APP_NAME:?run through azd: the outputs of main.bicep are missing}"
: "${AZURE_RESOURCE_GROUP:?}" "${AZURE_FUNCTION_APP_HOST_NAME:?}"
: "${AZURE_SUBSCRIPTION_ID:?}" "${AZURE_TENANT_ID:?}"

tries=${HEALTH_TRIES:-30}
pause=${HEALTH_RETRY_S:-10}
failing_tries=${HEALTH_FAILING_TRIES:-3}
url="https://$AZURE_FUNCTION_APP_HOST_NAME/api/health"

say() { echo "postdeploy: $*"; }
fail() {
  echo "postdeploy: $*" >&2
  exit 1
}

tenant=$(az account show --subscription "$AZURE_SUBSCRIPTION_ID" --query tenantId -o tsv 2>/dev/null) || tenant=""
if [ "$tenant" != "$AZURE_TENANT_ID" ]; then
  fail "az cannot use subscription $AZURE_SUBSCRIPTION_ID of tenant $AZURE_TENANT_ID (it sees tenant ${tenant:-none}); run: az login --tenant $AZURE_TENANT_ID, then azd deploy"
fi

python=""
for candidate in python3 python; do
  if command -v "$candidate" >/dev/null 2>&1; then
    python=$candidate
    break
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
body="$work/body"

# The health answer, one line per check, "ok"/"FAIL", name, milliseconds, detail. Exit 0: status
# ok; 1: status failing (the failing checks' lines also in $work/failing); 2: not the health JSON
# (a platform page while the app starts). HEALTH_KEY (environment, not argv) is masked wherever it
# would appear.
read_health() {
  if [ -z "$python" ]; then # no Python here: the status alone, the checks unread
    grep -q '"checks"' "$body" 2>/dev/null || return 2
    if [ "$1" = 200 ] && grep -Eq '"status" *: *"ok"' "$body"; then
      echo "  ok    (no python3 here to list the checks)"
      return 0
    fi
    echo "a check is failing (no python3 here to say which: open $url with the key)" >"$work/failing"
    return 1
  fi
  HEALTH_KEY=$key "$python" - "$body" "$work/failing" <<'PY'
import json, os, sys
key = os.environ.get("HEALTH_KEY", "")
key = key if len(key) >= 8 else "\0"  # a real key is long; a short one would mask words
def clean(value):
    text = " ".join(str(value).split()).replace(key, "***")
    return "".join(c if c.isprintable() else "?" for c in text)[:500]
try:
    with open(sys.argv[1], encoding="utf-8") as f:
        answer = json.load(f)
    status, checks = answer["status"], answer["checks"]
    assert status in ("ok", "failing") and isinstance(checks, list)
    rows = [(bool(c["ok"]), clean(c["name"]), c.get("ms"), clean(c.get("detail", ""))) for c in checks]
except Exception:
    sys.exit(2)
failing = []
for ok, name, ms, detail in rows:
    took = f"{ms:>6} ms" if isinstance(ms, (int, float)) else "       "
    line = f"{'ok  ' if ok else 'FAIL'}  {name:<12} {took}  {detail}"
    print("  " + line)
    if not ok:
        failing.append(f"{name}: {detail}")
if status != "ok" and not failing:
    failing.append("status failing, no check says why")
with open(sys.argv[2], "w", encoding="utf-8") as f:
    f.write("\n".join(failing) + "\n")
sys.exit(1 if failing else 0)
PY
}

key=""
attempt=0
failing_seen=0
last="no answer yet"
say "checking $url (each check of the app from inside, with its own identity)"
while [ "$attempt" -lt "$tries" ]; do
  attempt=$((attempt + 1))
  if [ -z "$key" ]; then
    key=$(az functionapp keys list --subscription "$AZURE_SUBSCRIPTION_ID" -g "$AZURE_RESOURCE_GROUP" \
      -n "$AZURE_FUNCTION_APP_NAME" --query functionKeys.default -o tsv 2>"$work/az.err") || key=""
  fi
  if [ -z "$key" ]; then
    # What az said, first line, cut short (it names no secret: the key is what it failed to get).
    said=$(grep -v '^[[:space:]]*$' "$work/az.err" 2>/dev/null | head -n 1 | cut -c1-200 | tr -d '\r') || said=""
    last="no function key yet (the host creates it when it first starts)${said:+; az said: $said}"
  else
    rm -f "$body"
    code=$(printf 'url = "%s"\nheader = "x-functions-key: %s"\n' "$url" "$key" |
      curl -sS --max-time 90 -o "$body" -w '%{http_code}' -K - 2>/dev/null) || code=${code:-000}
    case "$code" in
      200 | 503)
        status=0
        read_health "$code" >"$work/lines" || status=$?
        case "$status" in
          0)
            cat "$work/lines"
            say "healthy: every check passed"
            exit 0
            ;;
          1)
            failing_seen=$((failing_seen + 1))
            if [ "$failing_seen" -ge "$failing_tries" ]; then
              cat "$work/lines"
              while IFS= read -r line; do
                echo "postdeploy: failing: $line" >&2
              done <"$work/failing"
              exit 1
            fi
            last="failing: $(cut -d: -f1 "$work/failing" | tr '\n' ' ')(a new role can take minutes to apply)"
            ;;
          *) last="HTTP $code without the health JSON (the platform, while the app starts)" ;;
        esac
        ;;
      401 | 403)
        key="" # fetch it again: a key the host has just created may not be in force yet
        last="HTTP $code: the function key was refused"
        ;;
      404) last="HTTP 404: no /api/health yet (the host is still indexing, or the code is older)" ;;
      000) last="no answer (the app is starting)" ;;
      *) last="HTTP $code" ;;
    esac
  fi
  if [ "$attempt" -lt "$tries" ]; then
    say "not yet: $last; try $attempt of $tries, again in $pause s"
    sleep "$pause"
  fi
done
fail "$url gave no health answer in $tries tries (last: $last); run azd deploy again, and see docs/deploy.md, 'The health check'"
