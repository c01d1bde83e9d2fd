"""Issue 19: the services write ledger entries as typed records only (`put_record`,
`update_record` of shared/services/ledger.py), never as dict literals through `ledger.put` or
`update_entry`, so a field's name and type are written down once."""

from __future__ import annotations

import ast

from tests.support import REPO

SERVICES = REPO / "shared" / "services"


def untyped_ledger_writes(source: str) -> list[int]:
    """Line numbers of `<...>.ledger.put(...)` and `update_entry(...)` calls."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        on_ledger = (
            isinstance(func, ast.Attribute)
            and name == "put"
            and isinstance(func.value, ast.Attribute | ast.Name)
            and getattr(func.value, "attr", getattr(func.value, "id", "")) == "ledger"
        )
        if on_ledger or name == "update_entry":
            lines.append(node.lineno)
    return sorted(lines)


def test_the_check_sees_both_kinds_of_untyped_write() -> None:
    source = "services.ledger.put(p, k, {})\nupdate_entry(ledger, p, k, change)\nput_record(l, k, r)\n"
    assert untyped_ledger_writes(source) == [1, 2]


def test_no_service_writes_the_ledger_but_as_typed_records() -> None:
    found = {
        path.name: lines
        for path in sorted(SERVICES.glob("*.py"))
        if path.name != "ledger.py" and (lines := untyped_ledger_writes(path.read_text()))
    }
    assert found == {}, f"dict-literal ledger writes (use put_record / update_record): {found}"
