"""One page of the Product Usage API (contract section 1), as received and as landed in `raw`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.domain.errors import PermanentError
from shared.domain.usage_records import parse_json_int


class TruncatedPage(ValueError):
    """A 200 whose body is not JSON: a cut-off answer, worth asking for again."""


class MalformedPage(PermanentError, ValueError):
    """Valid JSON of the wrong shape: asking again gives the same answer."""

    kind = "malformed_page"


@dataclass(frozen=True)
class Page:
    number: int
    body: bytes  # exactly as received; landed in blob storage as is
    records: list[Any]
    has_next_page: bool
    total_pages: int | None


def parse_page(number: int, body: bytes) -> Page:
    """Read a page body: `data`, `has_next_page` and the optional `total_pages`."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TruncatedPage(f"page {number}: body is not valid JSON ({exc.__class__.__name__})") from None
    except ValueError:
        # An integer literal longer than Python converts (4,300 digits): read again with such
        # integers kept as digits, so the record holding one is quarantined, not the page lost.
        # Only then: a parse_int hook would slow every page down.
        payload = json.loads(body, parse_int=parse_json_int)
    except RecursionError:
        raise MalformedPage(f"page {number}: a value is nested too deeply to read") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise MalformedPage(f"page {number}: unexpected body, no 'data' list")
    has_next = payload.get("has_next_page")
    if not isinstance(has_next, bool):
        raise MalformedPage(f"page {number}: unexpected body, 'has_next_page' is not true/false")
    total = payload.get("total_pages")
    return Page(
        number=number,
        body=body,
        records=payload["data"],
        has_next_page=has_next,
        total_pages=total if isinstance(total, int) and not isinstance(total, bool) else None,
    )
