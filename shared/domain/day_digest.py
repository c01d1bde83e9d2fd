"""A digest of a day's usage records that does not depend on how the API paged or ordered them.

The lookback re-check (contract section 1) asks whether the API's data for a day changed since
it was landed. Page bytes answer "did the pages change": an API that sends the same records in
another order, or on other pages, would count as changed and rebuild seven days for nothing.
This digest answers "did the records change": each record is reduced to its canonical form
(a valid record to the row it stages, `12.0` and `12` alike; a refused one to canonical JSON),
hashed, and the hashes are added modulo 2**256. The sum is the same for the same records in any
order and on any pages, as a hash of the sorted records would be, but it is built page by page
in constant memory, so a day of millions of records need not be held to compare it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from shared.domain.usage_records import record_problem, row_of, valid_row

MODULUS = 2**256
DIGEST_KIND = "sum-sha256-v1"  # written beside the digest: a later change of form is told apart


def page_digest(records: Iterable[Any], day: str) -> int | None:
    """The sum of the records' hashes, or None when a record cannot be put in canonical form
    (then the re-check compares page bytes, as before digests)."""
    total = 0
    for record in records:
        text = _canonical(record, day)
        if text is None:
            return None
        total += int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")
    return total % MODULUS


def day_digest(page_digests: Iterable[int | None]) -> str | None:
    """The day's digest (hex) from its pages' digests; None if one page has none."""
    total = 0
    for digest in page_digests:
        if digest is None:
            return None
        total += digest
    return f"{total % MODULUS:064x}"


def _canonical(record: Any, day: str) -> str | None:
    row = valid_row(record, day)
    if row is None and record_problem(record, day) is None:
        row = row_of(record)
    if row is not None:
        # The two counts are ints, so the id is whatever precedes the last two separators.
        return f"row\x1f{row[0]}\x1f{row[1]}\x1f{row[2]}"
    try:
        return json.dumps(["refused", record], sort_keys=True, default=str, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return None
