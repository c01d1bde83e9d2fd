"""What a publish uploads: only what runs on Azure (.funcignore, read with git's own ignore rules,
which are the rules Core Tools applies to .funcignore)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support import REPO

NEEDED = {"function_app.py", "host.json", "requirements.txt", "shared/ports.py", "shared/bootstrap.py"}
NEEDED_FOLDERS = ("functions/", "shared/domain/", "shared/services/", "shared/adapters/", "sql/mssql/")
NOT_SHIPPED_FOLDERS = (
    ".venv/",
    "node_modules/",
    ".local/",
    "tests/",
    "benchmarks/",
    "docs/",
    "shared/local/",
)


def packaged(files: list[str], tmp_path: Path) -> set[str]:
    """The files of `files` that .funcignore keeps."""
    repo = tmp_path / "pkg"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    shutil.copy(REPO / ".funcignore", repo / ".gitignore")
    result = subprocess.run(
        ["git", "-C", str(repo), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(files),
        capture_output=True,
        text=True,
    )
    ignored = set(result.stdout.split())
    return {f for f in files if f not in ignored}


def test_the_package_is_what_runs_on_azure(tmp_path: Path) -> None:
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    local_only = [
        ".venv/bin/python",
        ".venv-lock/bin/uv",
        ".venv-bench/bin/python",
        "node_modules/azurite/package.json",
        ".local/warehouse.duckdb",
        "shared/__pycache__/ports.cpython-311.pyc",
        "local.settings.json",
    ]
    kept = packaged(tracked + local_only, tmp_path)
    assert kept >= NEEDED
    for folder in NEEDED_FOLDERS:
        assert any(f.startswith(folder) for f in kept), folder
        assert all(f in kept for f in tracked if f.startswith(folder) and f.endswith((".py", ".sql"))), folder
    for folder in NOT_SHIPPED_FOLDERS:
        assert not any(f.startswith(folder) for f in kept), folder
    assert not {f for f in kept if f.endswith((".pyc", ".duckdb", ".json")) and f != "host.json"}
    assert "shared/cli.py" not in kept
    # The remote build installs requirements.txt, the lock; its input and the other lists stay home.
    assert not kept & {"requirements.in", "requirements-local.txt", "requirements-dev.txt"}


def test_nothing_shipped_imports_what_is_not(tmp_path: Path) -> None:
    """Every module the package holds imports only modules the package holds (or installed ones)."""
    import ast

    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    kept = packaged(tracked, tmp_path)
    modules = {
        f.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for f in kept if f.endswith(".py")
    }
    for file in sorted(f for f in kept if f.endswith(".py")):
        for node in ast.walk(ast.parse((REPO / file).read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else (
                    [node.module]
                    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                    else []
                )
            )
            for name in names:
                if name.split(".")[0] in ("shared", "functions", "function_app"):
                    assert name in modules or any(m.startswith(name + ".") for m in modules), (
                        f"{file} imports {name}"
                    )
