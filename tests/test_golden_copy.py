"""The repository's golden case is the upstream one, file for file, where the upstream copy is
at hand (COMPANY_ACTIVITY_UPSTREAM, see tests/support.py); a user's clone has none, and needs none."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from tests.support import GOLDEN, UPSTREAM

UPSTREAM_GOLDEN = UPSTREAM / "golden"


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_the_copy_is_complete() -> None:
    assert GOLDEN.expected_csv.is_file() and len(GOLDEN.records()) == 10 and len(GOLDEN.crm_files()) == 8


@pytest.mark.skipif(not UPSTREAM_GOLDEN.is_dir(), reason="no upstream golden case beside this checkout")
def test_the_copy_equals_the_upstream_golden_case() -> None:
    assert _files(GOLDEN.root) == _files(UPSTREAM_GOLDEN)
    different = [
        str(p)
        for p in _files(UPSTREAM_GOLDEN)
        if not filecmp.cmp(UPSTREAM_GOLDEN / p, GOLDEN.root / p, shallow=False)
    ]
    assert different == []
