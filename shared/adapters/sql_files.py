"""Load the SQL files in `sql/<dialect>/`. Python never builds SQL from data: it only picks a file."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

SQL_ROOT = Path(__file__).resolve().parents[2] / "sql"
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
_COMMENT_LINE = re.compile(r"^\s*--.*$", re.MULTILINE)


@cache
def statements(dialect: str, name: str) -> tuple[str, ...]:
    """The statements of `sql/<dialect>/<name>.sql`, split at semicolons that end a line (comment
    lines dropped first, so a comment may end in a semicolon)."""
    text = _COMMENT_LINE.sub("", (SQL_ROOT / dialect / f"{name}.sql").read_text(encoding="utf-8"))
    parts = (part.strip() for part in _STATEMENT_END.split(text))
    return tuple(p for p in parts if p)
