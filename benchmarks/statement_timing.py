"""`python -m shared.cli ...` with every DuckDB statement timed, the slowest printed at exit.

    PYTHONPATH=. .venv/bin/python benchmarks/statement_timing.py backfill --from A --to B

Statements are grouped by their first words; BEGIN and COMMIT are statements too, so the
commits' share shows. Used by `ab_compare.py --statements`.
"""

from __future__ import annotations

import atexit
import collections
import re
import runpy
import sys
import time
from typing import Any

from shared.adapters import warehouse_duckdb

totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
_COMMENT = re.compile(r"--[^\n]*")
_SPACE = re.compile(r"\s+")


class TimedCursor:
    """A DuckDB connection or cursor whose `execute` is timed; its cursors are timed too."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def execute(self, sql: str, *args: Any) -> Any:
        start = time.perf_counter()
        result = self._inner.execute(sql, *args)
        key = _SPACE.sub(" ", _COMMENT.sub("", sql)).strip()[:70]
        totals[key][0] += 1
        totals[key][1] += time.perf_counter() - start
        return result

    def cursor(self) -> TimedCursor:
        return TimedCursor(self._inner.cursor())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def main() -> None:
    opened = warehouse_duckdb.DuckDbWarehouse._con
    warehouse_duckdb.DuckDbWarehouse._con = property(  # type: ignore[method-assign, assignment]
        lambda self: TimedCursor(opened.fget(self))  # type: ignore[attr-defined]
    )
    start = time.perf_counter()

    @atexit.register
    def show() -> None:
        print(f"wall in process {time.perf_counter() - start:.2f}", file=sys.stderr)
        for key, (count, seconds) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:25]:
            print(f"{seconds:7.3f} s {int(count):5d}  {key}", file=sys.stderr)

    sys.argv = ["shared.cli", *sys.argv[1:]]
    runpy.run_module("shared.cli", run_name="__main__")


if __name__ == "__main__":
    main()
