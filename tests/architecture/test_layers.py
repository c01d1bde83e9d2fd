"""The layering is checked, not hoped for (docs/architecture.md, "Layers").

`make lint` runs import-linter's contracts from pyproject.toml; these tests show that those
contracts break on a wrong import, and check what import-linter cannot see: that the domain
uses the standard library only, and what a Function App on Azure actually loads.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function, absolute names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_the_domain_uses_the_standard_library_only() -> None:
    for path in sorted((REPO / "shared" / "domain").rglob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top in sys.stdlib_module_names or module.startswith("shared.domain"), (
                f"{path.relative_to(REPO)} imports {module}"
            )


def test_trigger_glue_uses_no_azure_sdk_but_azure_functions() -> None:
    for path in [REPO / "function_app.py", *sorted((REPO / "functions").rglob("*.py"))]:
        for module in imported_modules(path):
            if module.split(".")[0] == "azure":
                assert module.startswith("azure.functions"), f"{path.relative_to(REPO)} imports {module}"


def test_the_function_app_imports_only_trigger_glue_and_what_is_below_it() -> None:
    for module in imported_modules(REPO / "function_app.py"):
        assert not module.startswith("shared.local") and module != "shared.cli", module


def _tree_with(tmp_path: Path, file: str, line: str) -> Path:
    """A copy of the packages and the lint settings, with one import added to `file`."""
    for folder in ("shared", "functions"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / file
    target.write_text(line + "\n" + target.read_text(encoding="utf-8"), encoding="utf-8")
    return tmp_path


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(cwd)},
        timeout=120,
    )


def test_the_tree_keeps_its_contracts(tmp_path: Path) -> None:
    result = _lint_imports(_tree_with(tmp_path, "shared/domain/names.py", "import hashlib"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("file", "line"),
    [
        ("shared/services/staging.py", "from shared.adapters.blob_folder import FolderBlobStore"),
        ("shared/domain/quality.py", "from shared.ports import Services"),
        ("shared/domain/days.py", "import requests"),
        ("functions/ingest.py", "from shared.local.host import LocalHost"),
        ("shared/adapters/ledger_sqlite.py", "from shared.services.ledger import update_entry"),
        ("shared/bootstrap.py", "from shared.local.simulator import UsageApiSimulator"),
    ],
    ids=[
        "service->adapter",
        "domain->ports",
        "domain->requests",
        "functions->local",
        "adapter->service",
        "root->local",
    ],
)
def test_a_wrong_import_breaks_the_lint(tmp_path: Path, file: str, line: str) -> None:
    result = _lint_imports(_tree_with(tmp_path, file, line))
    assert result.returncode != 0
    assert "BROKEN" in result.stdout


AZURE_IMPORT = """
import json, sys
import function_app
functions = function_app.app.get_functions()  # what the worker does when it indexes the app
loaded = sorted(m for m in sys.modules if m == "duckdb" or m.startswith(("duckdb.", "shared.local", "shared.cli"))
    or m in ("shared.adapters.warehouse_duckdb", "shared.adapters.bus_in_process", "shared.adapters.blob_folder",
             "shared.adapters.ledger_sqlite", "shared.adapters.bus_journal"))
print(json.dumps({"functions": len(functions), "local_modules": loaded}))
"""


def test_a_function_app_with_azure_settings_loads_nothing_local() -> None:
    env = {
        **os.environ,
        "FETCH_SCHEDULE": "0 30 2 * * *",
        "DATA_STORAGE_ACCOUNT_NAME": "stcompanyactivity",
        "ServiceBusConnection__fullyQualifiedNamespace": "sb-company-activity.servicebus.windows.net",
        "SQL_SERVER": "sql-company-activity.database.windows.net",
        "SQL_DATABASE": "companyactivity",
        "WEBSITE_SITE_NAME": "func-company-activity",
    }
    result = subprocess.run(
        [sys.executable, "-c", AZURE_IMPORT], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"functions": 9, "local_modules": []}
