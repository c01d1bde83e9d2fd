"""The azd post-deploy hook, run for real by sh with stand-ins for az, curl and sleep on PATH:
it fetches the function key pinned to azd's subscription, asks GET /api/health until the app
answers, prints every check, fails `azd up` with the failing check's line, gives up on an app
that never answers, and never shows the key (not on a command line, not in its output)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO

HOOK = REPO / "infra" / "hooks" / "postdeploy.sh"
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
KEY = "fk-Zx81qQ0pLr7w_secret=="
HOST = "func-cact-dev-abc.azurewebsites.net"
SH = shutil.which("sh") or "/bin/sh"

# Each curl call answers the next line of $ANSWERS ("<status> <body file>" or "down"); the last
# line repeats. The config curl reads on stdin (-K -) is kept for the test to look at.
FAKE = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0")" in
  az)
    case "$1 $2" in
      "account show") echo "${AZ_TENANT-tenant-1}" ;;
      "functionapp keys")
        n=$(cat "$CALLS.keys" 2>/dev/null || echo 0); echo $((n + 1)) > "$CALLS.keys"
        [ "$n" -ge "${KEY_FAILURES:-0}" ] || { echo "ServiceUnavailable" >&2; exit 1; }
        echo "$FUNCTION_KEY" ;;
    esac ;;
  curl)
    cat >> "$CALLS.curlconfig"
    out=""; prev=""
    for arg in "$@"; do [ "$prev" = "-o" ] && out=$arg; prev=$arg; done
    n=$(cat "$CALLS.curl" 2>/dev/null || echo 0); echo $((n + 1)) > "$CALLS.curl"
    total=$(wc -l < "$ANSWERS")
    line=$(sed -n "$(( n < total ? n + 1 : total ))p" "$ANSWERS")
    if [ "$line" = "down" ]; then printf 000; echo "curl: (7) Failed to connect" >&2; exit 7; fi
    cp "${line#* }" "$out"; printf '%s' "${line%% *}" ;;
esac
exit 0
"""


def health(status: str, *failing: str) -> dict[str, object]:
    names = ["settings", "blob_store", "ledger", "bus", "warehouse", "usage_api", "alert_sink"]
    return {
        "status": status,
        "checks": [
            {
                "name": name,
                "ok": name not in failing,
                "detail": "ODBC Driver 18 for SQL Server not found on this worker"
                if name in failing
                else "reachable",
                "ms": 12,
            }
            for name in names
        ],
    }


@pytest.fixture
def run_hook(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("az", "curl", "sleep"):
        (bin_dir / tool).write_text(FAKE)
        (bin_dir / tool).chmod(0o755)
    python = shutil.which("python3") or shutil.which("python")
    assert python, "the test needs a Python on PATH for the hook's JSON reading"
    (bin_dir / "python3").symlink_to(python)
    calls = tmp_path / "calls.log"

    def run(
        answers: list[str | tuple[int, object]], **env: str
    ) -> tuple[subprocess.CompletedProcess[str], str]:
        lines = []
        for index, answer in enumerate(answers):
            if answer == "down":
                lines.append("down")
                continue
            assert isinstance(answer, tuple)
            code, content = answer
            body = tmp_path / f"body{index}"
            body.write_text(content if isinstance(content, str) else json.dumps(content))
            lines.append(f"{code} {body}")
        (tmp_path / "answers").write_text("\n".join(lines) + "\n")
        environment = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "CALLS": str(calls),
            "ANSWERS": str(tmp_path / "answers"),
            "FUNCTION_KEY": KEY,
            "AZURE_FUNCTION_APP_NAME": "func-cact-dev-abc",
            "AZURE_FUNCTION_APP_HOST_NAME": HOST,
            "AZURE_RESOURCE_GROUP": "rg-company-activity-dev",
            "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
            "AZURE_TENANT_ID": "tenant-1",
            **env,
        }
        result = subprocess.run([SH, str(HOOK)], env=environment, capture_output=True, text=True, timeout=120)
        return result, calls.read_text() if calls.exists() else ""

    return run, calls


def _curl_config(calls: Path) -> str:
    return Path(str(calls) + ".curlconfig").read_text()


def test_a_healthy_app_prints_every_check_and_passes(run_hook) -> None:
    run, calls = run_hook
    result, log = run([(200, health("ok"))])
    assert result.returncode == 0, result.stderr
    for name in ("settings", "blob_store", "ledger", "bus", "warehouse", "usage_api", "alert_sink"):
        assert any(line.split()[:2] == ["ok", name] for line in result.stdout.splitlines()), name
    assert "healthy: every check passed" in result.stdout
    config = _curl_config(calls)  # on stdin only
    assert f'url = "https://{HOST}/api/health"' in config
    assert f'header = "x-functions-key: {KEY}"' in config and "code=" not in config  # not in the URL
    keys = [line for line in log.splitlines() if line.startswith("az functionapp keys list")]
    assert keys == [
        f"az functionapp keys list --subscription {SUBSCRIPTION} -g rg-company-activity-dev "
        "-n func-cact-dev-abc --query functionKeys.default -o tsv"
    ]
    assert all(
        f"--subscription {SUBSCRIPTION}" in line for line in log.splitlines() if line.startswith("az ")
    )
    assert KEY not in log + result.stdout + result.stderr


def test_the_app_starting_is_waited_for(run_hook) -> None:
    """No answer, the platform's own 503 page, then the health JSON: retried, not failed."""
    run, _ = run_hook
    result, log = run(
        ["down", (503, "<html>Service Unavailable</html>"), (404, ""), (200, health("ok"))], KEY_FAILURES="1"
    )
    assert result.returncode == 0, result.stderr
    assert log.count("sleep 10") == 4  # the key, no answer, the platform page, 404
    assert "no function key yet" in result.stdout and "without the health JSON" in result.stdout
    assert KEY not in log + result.stdout + result.stderr


def test_a_failing_check_fails_the_deployment_with_its_line(run_hook) -> None:
    run, _ = run_hook
    result, log = run([(503, health("failing", "warehouse"))])
    assert result.returncode == 1
    assert log.count("curl ") == 3  # a failing answer is final after three (roles take a while)
    assert result.stderr.strip() == (
        "postdeploy: failing: warehouse: ODBC Driver 18 for SQL Server not found on this worker"
    )
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ["FAIL", "warehouse"] for line in lines)
    assert any(line.split()[:2] == ["ok", "settings"] for line in lines)  # every check is shown
    assert KEY not in log + result.stdout + result.stderr


def test_a_check_that_recovers_while_a_role_applies_passes(run_hook) -> None:
    run, _ = run_hook
    result, _ = run([(503, health("failing", "bus")), (200, health("ok"))])
    assert result.returncode == 0, result.stderr
    assert "not yet: failing: bus" in result.stdout


def test_an_app_that_never_answers_fails_in_one_line_after_bounded_tries(run_hook) -> None:
    run, _ = run_hook
    result, log = run(["down"])
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"postdeploy: https://{HOST}/api/health gave no health answer in 30 tries")
    assert "last: no answer" in line
    assert log.count("curl ") == 30 and log.count("sleep 10") == 29  # about five minutes, then stop


def test_a_request_may_take_longer_than_the_slowest_check(run_hook) -> None:
    """The answer takes up to 65 s (settings 20 + warehouse 45); curl used to give up at 60."""
    run, _ = run_hook
    result, log = run([(200, health("ok"))])
    assert result.returncode == 0 and "--max-time 90" in log


def test_a_key_that_cannot_be_fetched_says_what_az_said(run_hook) -> None:
    run, _ = run_hook
    result, _ = run([(200, health("ok"))], KEY_FAILURES="99", HEALTH_TRIES="2")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "no function key yet" in line and "az said: ServiceUnavailable" in line


def test_a_refused_key_is_fetched_again(run_hook) -> None:
    run, _ = run_hook
    result, log = run([(401, ""), (200, health("ok"))])
    assert result.returncode == 0, result.stderr
    assert log.count("az functionapp keys list") == 2


def test_the_key_is_never_shown_even_if_an_answer_echoes_it(run_hook) -> None:
    run, _ = run_hook
    echoing = health("failing", "usage_api")
    echoing["checks"][5]["detail"] = f"refused with code={KEY}"  # type: ignore[index]
    result, log = run([(503, echoing)], HEALTH_FAILING_TRIES="1")
    assert result.returncode == 1
    assert KEY not in log + result.stdout + result.stderr
    assert "code=***" in result.stderr


def test_a_cli_that_cannot_see_the_subscription_stops_in_one_line(run_hook) -> None:
    run, _ = run_hook
    result, log = run([(200, health("ok"))], AZ_TENANT="tenant-2")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert f"az cannot use subscription {SUBSCRIPTION} of tenant tenant-1" in line and "tenant-2" in line
    assert "keys list" not in log and "curl" not in log


def test_outside_azd_it_says_what_is_missing(run_hook) -> None:
    run, _ = run_hook
    result, log = run([(200, health("ok"))], AZURE_FUNCTION_APP_NAME="")
    assert result.returncode != 0 and "run through azd" in result.stderr and log == ""


@pytest.mark.parametrize(("answer", "code"), [((200, health("ok")), 0), ((503, health("failing", "bus")), 1)])
def test_without_python_it_judges_by_the_status(run_hook, tmp_path: Path, answer, code: int) -> None:
    run, _ = run_hook
    bin_dir = tmp_path / "bin"
    (bin_dir / "python3").unlink()
    for tool in ("mktemp", "rm", "cat", "cut", "tr", "grep", "basename", "sed", "wc", "cp"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    result, log = run([(503, "<html>starting</html>"), answer], PATH=str(bin_dir))
    assert result.returncode == code, result.stdout + result.stderr
    assert "without the health JSON" in result.stdout  # the platform page is still waited for
    if code:
        assert result.stderr.startswith("postdeploy: failing: a check is failing (no python3 here")
    assert KEY not in log + result.stdout + result.stderr


def test_the_hook_is_posix_sh() -> None:
    assert HOOK.read_text().startswith("#!/bin/sh\n") and os.access(HOOK, os.X_OK)
