"""requirements.txt is what the Flex Consumption remote build installs: exactly what runs on
Azure, every package pinned (a lock compiled from requirements.in by `make lock`), nothing that
only the local host or the tests need (requirements-local.txt, requirements-dev.txt)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, distributions, version
from pathlib import Path

from tests.infra.test_funcignore import packaged
from tests.support import REPO

LOCK = REPO / "requirements.txt"
PINNED = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)")
# Never on Azure, whatever else the lists say: the local warehouse and the tools of the tests.
LOCAL_ONLY = {
    "duckdb",
    "pytest",
    "hypothesis",
    "ruff",
    "mypy",
    "import-linter",
    "sqlglot",
    "tree-sitter",
    "tree-sitter-bicep",
    "azure-functions-doctor",
    "azure-functions-runtime",
    "dlt",
}
# Shipped with shared/adapters/, loaded only when no Azure setting selects the Azure adapter
# (tests/architecture: a Function App with Azure settings loads none of them).
LOCAL_ADAPTERS = {"warehouse_duckdb", "bus_in_process", "blob_folder", "ledger_sqlite", "bus_journal"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lines(path: Path) -> list[str]:
    """The requirement lines of a file: comments (whole-line or trailing) and blanks left out."""
    found = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            found.append(line)
    return found


def locked() -> dict[str, str]:
    return {normalize(m["name"]): m["version"] for line in lines(LOCK) if (m := PINNED.fullmatch(line))}


def named(path: Path) -> set[str]:
    """The packages a requirements file names itself (not through -r)."""
    return {
        normalize(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0])
        for line in lines(path)
        if not line.startswith("-")
    }


def test_every_line_is_a_pinned_package() -> None:
    refused = [line for line in lines(LOCK) if not PINNED.fullmatch(line)]
    assert refused == [], "requirements.txt takes name==version lines only (run make lock)"
    assert len(locked()) == len(lines(LOCK)), "a package is pinned twice"


def test_the_lock_says_how_it_is_made_and_holds_what_requirements_in_asks_for() -> None:
    header = LOCK.read_text(encoding="utf-8").splitlines()[:3]
    assert any("make lock" in line and "uv pip compile requirements.in" in line for line in header), header
    # uv marks what the input file asks for; anything else is there because a package needs it.
    blocks = re.split(r"^(?=[A-Za-z0-9])", LOCK.read_text(encoding="utf-8"), flags=re.MULTILINE)
    asked = {normalize(m["name"]) for b in blocks if (m := PINNED.match(b)) and "-r requirements.in" in b}
    assert asked == named(REPO / "requirements.in"), "requirements.in changed: run make lock"


def test_the_lock_is_for_the_python_azure_runs() -> None:
    bicep = (REPO / "infra" / "bicep" / "modules" / "functionapp.bicep").read_text(encoding="utf-8")
    [runtime] = re.findall(r"name: 'python'\s+version: '([0-9.]+)'", bicep)
    [locked_for] = re.findall(r"--python-version ([0-9.]+)", (REPO / "Makefile").read_text(encoding="utf-8"))
    assert locked_for == runtime


def test_nothing_local_only_is_deployed() -> None:
    local = LOCAL_ONLY | named(REPO / "requirements-local.txt") | named(REPO / "requirements-dev.txt")
    assert sorted(set(locked()) & local) == []


def test_the_local_and_dev_lists_build_on_the_lock() -> None:
    """`make setup` installs requirements-dev.txt, which pulls in the local list and the lock."""
    assert "-r requirements.txt" in lines(REPO / "requirements-local.txt")
    assert "-r requirements-local.txt" in lines(REPO / "requirements-dev.txt")
    assert "duckdb" in named(REPO / "requirements-local.txt")


def azure_files(tmp_path: Path) -> list[str]:
    """The Python files a publish ships (.funcignore) that the Function App can load on Azure."""
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    return sorted(
        f
        for f in packaged(tracked, tmp_path)
        if f.endswith(".py") and not (f.startswith("shared/adapters/") and Path(f).stem in LOCAL_ADAPTERS)
    )


def third_party_imports(file: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse((REPO / file).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {
        m
        for m in found
        if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] not in ("shared", "functions")
    }


@cache
def _module_files() -> dict[str, set[str]]:
    """Installed distribution of each module path (`azure/storage/blob`, `pyodbc`), from RECORDs:
    `azure` alone is a namespace many distributions share."""
    owners: dict[str, set[str]] = {}
    for dist in distributions():
        for file in dist.files or []:
            parts = Path(str(file)).parts
            if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] == "..":
                continue
            stem = [*parts[:-1], parts[-1].split(".", 1)[0]]
            for depth in range(1, len(stem) + 1):
                owners.setdefault("/".join(stem[:depth]), set()).add(normalize(dist.metadata["Name"]))
    return owners


def providers(module: str) -> set[str]:
    return _module_files().get(module.replace(".", "/"), set())


def test_every_import_on_azure_is_in_the_lock(tmp_path: Path) -> None:
    files = azure_files(tmp_path)
    assert "function_app.py" in files and "shared/adapters/warehouse_mssql.py" in files
    assert "shared/adapters/warehouse_duckdb.py" not in files and not any(
        f.startswith("shared/local/") for f in files
    )
    pins = locked()
    missing = {
        f"{file}: {module} ({', '.join(sorted(providers(module))) or 'not installed'})"
        for file in files
        for module in third_party_imports(file)
        if not providers(module) & set(pins)
    }
    assert sorted(missing) == [], "add the package to requirements.in and run make lock"


def test_the_worker_gets_the_application_insights_distro() -> None:
    """Not imported by the app: the worker loads it when infra/bicep turns telemetry on."""
    bicep = (REPO / "infra" / "bicep" / "modules" / "functionapp.bicep").read_text(encoding="utf-8")
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'" in bicep
    assert "azure-monitor-opentelemetry" in locked()


def test_the_tests_run_on_the_pinned_versions() -> None:
    """`make setup` reinstalls when the lock changes: what is tested here is what is deployed."""
    differ = {}
    for name, pinned in locked().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "not installed"
        if installed != pinned:
            differ[name] = f"{installed}, pinned {pinned}"
    assert differ == {}, "run make setup"
