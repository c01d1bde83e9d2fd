"""The repository's golden case is the upstream one, file for file, wherever that sits beside
the checkout (a developer's workspace); a user's clone has none, and needs none."""

from __future__ import annotations

import filecmp

import pytest

from tests.conftest import GOLDEN, REPO

UPSTREAM = REPO.parent / "shared" / "golden"


def _files(root):  # type: ignore[no-untyped-def]
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_the_copy_is_complete() -> None:
    assert GOLDEN.expected_csv.is_file() and len(GOLDEN.records()) == 10 and len(GOLDEN.crm_files()) == 8


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason="no upstream golden case beside this checkout")
def test_the_copy_equals_the_upstream_golden_case() -> None:
    assert _files(GOLDEN.root) == _files(UPSTREAM)
    different = [
        str(p) for p in _files(UPSTREAM) if not filecmp.cmp(UPSTREAM / p, GOLDEN.root / p, shallow=False)
    ]
    assert different == []
