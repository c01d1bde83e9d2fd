"""The tests' own layering: fixtures in conftest.py, the file pytest loads itself; everything a
test imports (constants, helpers) in tests/support.py, so no test depends on the fixture file
as a library."""

from __future__ import annotations

from tests.architecture.test_layers import imported_modules
from tests.support import REPO


def test_no_test_module_imports_a_conftest() -> None:
    importers = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "tests").rglob("*.py"))
        if any(module.split(".")[-1] == "conftest" for module in imported_modules(path))
    ]
    assert not importers, f"import helpers from tests.support, not from a conftest: {importers}"
