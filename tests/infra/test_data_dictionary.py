"""docs/data-dictionary.md describes every column of every table and view the warehouse has."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from shared.adapters.warehouse_duckdb import DuckDbWarehouse

REPO = Path(__file__).resolve().parents[2]
DICTIONARY = REPO / "docs" / "data-dictionary.md"


def described() -> dict[str, set[str]]:
    """Section (table or view) -> the column names its table's first cells name."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in DICTIONARY.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## ([a-z_]+\.[a-z_]+)", line)
        if heading:
            current = heading.group(1)
            sections[current] = set()
        elif current and line.startswith("| `"):
            first_cell = line.split("|")[1]
            sections[current] |= set(re.findall(r"`([a-z0-9_]+)`", first_cell))
    return sections


def warehouse_columns(tmp_path: Path) -> dict[str, set[str]]:
    warehouse = DuckDbWarehouse(tmp_path / "w.duckdb")
    warehouse.apply_schema()
    warehouse.close()
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT table_schema || '.' || table_name, column_name FROM information_schema.columns"
            " WHERE table_schema IN ('stg', 'analytics')"
        ).fetchall()
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return found


def test_every_column_of_every_table_and_view_is_described(tmp_path: Path) -> None:
    columns, doc = warehouse_columns(tmp_path), described()
    assert set(columns) == set(doc), "a table or view is missing from the dictionary (or no longer exists)"
    for table, names in columns.items():
        assert names <= doc[table], f"{table}: not described: {sorted(names - doc[table])}"
        assert doc[table] <= names, f"{table}: described but not in the schema: {sorted(doc[table] - names)}"


def test_readme_links_the_dictionary() -> None:
    assert "docs/data-dictionary.md" in (REPO / "README.md").read_text(encoding="utf-8")
