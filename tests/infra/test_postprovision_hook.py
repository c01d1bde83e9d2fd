"""The azd post-provision hook, run for real by sh with stand-ins for az, go-sqlcmd, curl and
sleep on PATH: what it asks Azure to do, in which order, retried while Azure catches up, and
that no secret is ever on a command line."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO

HOOK = REPO / "infra" / "hooks" / "postprovision.sh"
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
# The one az call that must not name the subscription: it reads the CLI's default tenant, whose
# token sqlcmd uses.
TENANT_CHECK = "az account show --query tenantId -o tsv"
FAKE = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0")" in
  sqlcmd)
    if [ "$1" = "--help" ]; then echo "  --authentication-method string"; exit 0; fi
    n=$(cat "$CALLS.sqlcmd" 2>/dev/null || echo 0); echo $((n + 1)) > "$CALLS.sqlcmd"
    [ "$n" -ge "${SQLCMD_FAILURES:-0}" ] || { echo "Login failed: client IP not allowed" >&2; exit 1; } ;;
  curl) echo 203.0.113.7 ;;
  az)
    if [ "$1 $2" = "account show" ]; then
      [ -n "${AZ_TENANT-tenant-1}" ] || { echo "Please run 'az login' to setup account." >&2; exit 1; }
      echo "${AZ_TENANT-tenant-1}"; exit 0
    fi
    for arg in "$@"; do case "$arg" in --file) next=1 ;; *) [ -n "${next:-}" ] && cp "$arg" "$CALLS.secret"; next= ;; esac; done ;;
esac
exit 0
"""


@pytest.fixture
def run_hook(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("az", "sqlcmd", "curl", "sleep"):
        (bin_dir / tool).write_text(FAKE)
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls.log"

    def run(**env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        environment = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "CALLS": str(calls),
            "AZURE_FUNCTION_APP_NAME": "cact-dev-func",
            "AZURE_RESOURCE_GROUP": "rg-cact-dev",
            "SQL_SERVER": "cact-dev-sql.database.windows.net",
            "SQL_DATABASE": "companyactivity",
            "KEY_VAULT_NAME": "cact-dev-kv",
            "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
            "AZURE_TENANT_ID": "tenant-1",
            **env,
        }
        result = subprocess.run(
            ["sh", str(HOOK)], env=environment, capture_output=True, text=True, timeout=60
        )
        return result, calls.read_text().splitlines() if calls.exists() else []

    return run, calls


def test_the_hook_makes_the_user_applies_the_schema_sets_the_secret_and_restarts(run_hook) -> None:
    run, calls = run_hook
    result, log = run(USAGE_API_KEY="sk-test-7f3a9c1d5e", SQLCMD_FAILURES="2")
    assert result.returncode == 0, result.stderr
    steps = [
        line.split()[0] + " " + " ".join(line.split()[1:3])
        for line in log
        if not line.startswith("sqlcmd --help")
    ]
    assert steps[0] == "az account show" and TENANT_CHECK in log  # the tenant, before its token is used
    assert steps[1] == "curl -fsS https://api.ipify.org"
    assert steps[2] == "az sql server"  # the firewall rule for this machine
    assert sum(line.startswith("sleep 10") for line in log) == 2  # the two refused logins, retried
    text = "\n".join(log)
    assert text.count("CREATE USER [cact-dev-func] FROM EXTERNAL PROVIDER") == 3  # 2 refused, then done
    assert text.count(f"-i {REPO}/sql/mssql/schema.sql") == 1
    assert any(
        line.startswith(
            f"az keyvault secret set --subscription {SUBSCRIPTION} --vault-name cact-dev-kv -n usage-api-key"
        )
        for line in log
    )
    assert (Path(str(calls) + ".secret")).read_text() == "sk-test-7f3a9c1d5e"  # through a file
    assert (
        "sk-test-7f3a9c1d5e" not in "\n".join(log) + result.stdout + result.stderr
    )  # never on a command line
    assert log[-2].startswith(
        f"az functionapp restart --subscription {SUBSCRIPTION} -g rg-cact-dev -n cact-dev-func"
    )
    assert log[-1].startswith("az sql server firewall-rule delete")  # removed again on exit


def test_an_azd_secret_reference_is_not_written_as_the_secret(run_hook) -> None:
    """`azd env set-secret` leaves akvs://... in the azd environment: not the key to store."""
    run, _ = run_hook
    reference = "akvs://11111111-2222-3333-4444-555555555555/azd-vault/usage-api-key"
    result, log = run(USAGE_API_KEY=reference)
    assert result.returncode == 0, result.stderr
    assert not any(line.startswith("az keyvault secret set") for line in log)
    assert "USAGE_API_KEY is an azd Key Vault reference" in result.stderr


def test_without_go_sqlcmd_it_stops_with_one_clear_line(run_hook, tmp_path: Path) -> None:
    run, _ = run_hook
    legacy = tmp_path / "bin" / "sqlcmd"
    legacy.write_text("#!/bin/sh\necho 'usage: sqlcmd [-U login id] [-P password]'\n")
    result, _ = run()
    assert result.returncode == 1 and "go-sqlcmd not found" in result.stderr


def test_outside_azd_it_says_what_is_missing(run_hook) -> None:
    run, _ = run_hook
    result, log = run(AZURE_FUNCTION_APP_NAME="")
    assert result.returncode != 0 and "run through azd" in result.stderr and log == []


def test_the_hook_is_posix_sh() -> None:
    assert HOOK.read_text().startswith("#!/bin/sh\n") and os.access(HOOK, os.X_OK)


def test_every_az_call_names_azds_subscription(run_hook) -> None:
    """With several subscriptions, the CLI's default is not necessarily the one azd deploys to."""
    run, _ = run_hook
    result, log = run(USAGE_API_KEY="sk-test", ALERT_WEBHOOK_URL="https://hooks.example/x")
    assert result.returncode == 0, result.stderr
    az_calls = [line for line in log if line.startswith("az ")]
    assert len(az_calls) == 6  # tenant, firewall rule, two secrets, restart, firewall rule removed
    unpinned = [line for line in az_calls if f"--subscription {SUBSCRIPTION} " not in line]
    assert unpinned == [TENANT_CHECK]
    for line in HOOK.read_text().splitlines():
        code = line.split("#", 1)[0]
        if code.strip().startswith("echo"):
            continue  # a message that tells the user what to run
        if re.search(r"(^|[\s'(;])az ", code) and "account show --query tenantId" not in code:
            assert '--subscription "$AZURE_SUBSCRIPTION_ID"' in code, line  # also the calls not run here


@pytest.mark.parametrize(
    ("tenant", "said"), [("tenant-2", "signed in to tenant tenant-2"), ("", "not signed in")]
)
def test_a_cli_signed_in_elsewhere_stops_the_hook_in_one_line(run_hook, tenant: str, said: str) -> None:
    run, _ = run_hook
    result, log = run(AZ_TENANT=tenant)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert said in line and "azd deploys to tenant tenant-1" in line
    assert f"az login --tenant tenant-1 && az account set --subscription {SUBSCRIPTION}" in line
    assert [call for call in log if not call.startswith("sqlcmd --help")] == [
        TENANT_CHECK
    ]  # nothing else ran
