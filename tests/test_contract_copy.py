"""docs/contract.md carries the contract word for word between its markers; where the upstream
copy is at hand (COMPANY_ACTIVITY_UPSTREAM, see tests/support.py), the two must say the same."""

from __future__ import annotations

import pytest

from tests.support import REPO, UPSTREAM

DOC = REPO / "docs" / "contract.md"
UPSTREAM_CONTRACT = UPSTREAM / "spec" / "contract.md"
BEGIN, END = "<!-- contract:begin -->\n", "<!-- contract:end -->\n"


def contract_text() -> str:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "docs/contract.md lost a marker"
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def test_the_project_copy_has_every_section() -> None:
    body = contract_text()
    for number in range(1, 9):
        assert f"\n## {number}. " in body, f"section {number} missing"


@pytest.mark.skipif(not UPSTREAM_CONTRACT.is_file(), reason="no upstream contract beside this checkout")
def test_the_project_copy_says_what_the_upstream_contract_says() -> None:
    assert contract_text() == UPSTREAM_CONTRACT.read_text(encoding="utf-8")
