"""Validate API usage records (contract section 1) and drop page-drift duplicates."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from shared.domain.text_limits import MAX_COMPANY_ID, length_problem, shortened

INT_MAX = 2**31 - 1  # the warehouse columns are INT
UsageRow = tuple[str, int, int]  # company_id, active_users, events
MAX_REASON = 200  # a reason kept with an unknown day quotes the value: bounded, whatever was sent


@dataclass(frozen=True)
class RejectedRecord:
    source_blob: str
    index: int  # position within its page's `data`
    reason: str
    record: Any
    # The company whose usage on the day this rejection makes unknown: a valid company_id and
    # the requested date, refused for its counts (contract section 3). None otherwise.
    unknown_company: str | None = None


@dataclass
class ValidatedDay:
    """The day's staged rows, kept as three columns: a tuple per row would be one more object
    per company for the cyclic collector to walk (about 15 ms a 100k day) and to hold."""

    positions: dict[str, int] = field(default_factory=dict)  # company_id -> its row; first seen wins
    company_ids: list[str] = field(default_factory=list)
    active_users: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    received: int = 0
    duplicates: int = 0  # the same record again (page drift): staged once, not an error
    conflicts: int = 0  # the same company again with other counts: quarantined

    def staged_rows(self) -> list[UsageRow]:
        return list(self.rows_to_stage())

    def rows_to_stage(self) -> StagedRows:
        """The rows for the warehouse, made one at a time as it reads them."""
        return StagedRows(self.company_ids, self.active_users, self.events)

    def unknown_companies(self) -> dict[str, str]:
        """company_id -> reason for the companies whose usage on the day is unknown: a record of
        theirs was refused for its counts and none was staged (a quarantined record never
        adds a row; it makes the day unknown for a company that has no staged record)."""
        unknown: dict[str, str] = {}
        for rejected in self.rejected:
            company = rejected.unknown_company
            if company is not None and company not in self.positions:
                unknown.setdefault(company, rejected.reason[:MAX_REASON])
        return unknown

    def add_new_companies(self, columns: Columns) -> bool:
        """Add the rows of a page whose companies are all new to the day, each once; or add
        nothing and say False (a company seen before, or twice in the page)."""
        company_ids, users, events = columns
        positions = self.positions
        if not positions.keys().isdisjoint(company_ids):
            return False
        start = len(self.company_ids)
        positions.update(zip(company_ids, range(start, start + len(company_ids)), strict=True))
        if len(positions) != start + len(company_ids):  # a company twice within the page
            for company_id in company_ids:  # all of them new (disjoint): only this page's go
                positions.pop(company_id, None)
            return False
        self.company_ids += company_ids
        self.active_users += users
        self.events += events
        return True

    def add_row(self, source_blob: str, index: int, row: UsageRow, record: Any) -> None:
        """Fold one valid record in: a new company's row, a duplicate, or a conflict."""
        company_id, users, events = row
        seen = self.positions.get(company_id)
        if seen is None:
            self.positions[company_id] = len(self.company_ids)
            self.company_ids.append(company_id)
            self.active_users.append(users)
            self.events.append(events)
        elif self.active_users[seen] == users and self.events[seen] == events:
            self.duplicates += 1
        else:
            # Drift that also changed the numbers: keep the first, quarantine the other, so
            # every record is accounted for and the choice does not depend on arrival order of runs.
            self.conflicts += 1
            self.rejected.append(
                RejectedRecord(
                    source_blob, index, f"conflicting duplicate of company_id {company_id}", record
                )
            )


Columns = tuple[list[str], list[int], list[int]]  # company_ids, active_users, events


class StagedRows:
    """Rows zipped from columns each time they are iterated (a warehouse may retry its
    transaction and read them again), so no tuple per row is ever held."""

    def __init__(self, company_ids: list[str], active_users: list[int], events: list[int]) -> None:
        self._columns = (company_ids, active_users, events)

    def __iter__(self) -> Iterator[UsageRow]:
        return zip(*self._columns, strict=True)

    def __len__(self) -> int:
        return len(self._columns[0])


_MISSING: Any = object()  # a field the record does not have, told apart from null
_LONG_DIGITS = 20  # an integer of more digits is out of range whatever it is: never converted
_SURROGATE = re.compile("[\ud800-\udfff]")
_EXAMPLE_CHARS = 40


class LongInteger:
    """An integer literal too long to convert (`parse_page` makes one of each integer of more
    than `_LONG_DIGITS` digits when Python refuses to convert it): its digits are kept, never
    turned into an int, so a record of a million digits costs nothing and is refused as what it
    is, a number out of range."""

    __slots__ = ("digits",)

    def __init__(self, digits: str) -> None:
        self.digits = digits

    def __str__(self) -> str:
        return self.digits

    def __repr__(self) -> str:
        return f"LongInteger({shown(self)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LongInteger) and other.digits == self.digits

    def __hash__(self) -> int:
        return hash(self.digits)


def parse_json_int(text: str) -> int | LongInteger:
    """`json.loads(..., parse_int=parse_json_int)`: an int, or a LongInteger past 20 digits."""
    return int(text) if len(text.lstrip("-")) <= _LONG_DIGITS else LongInteger(text)


def shown(value: Any) -> str:
    """A value as the API sent it, in JSON, short and printable: `"14"`, `1.5`, `true`, `null`.
    A lone surrogate is shown escaped (`"\\ud800"`), a long value cut with `...`, and a long
    integer by its first digits and its length (never converted to text as a whole)."""
    if isinstance(value, LongInteger):
        digits = value.digits
        return f"{digits[:12]}... ({len(digits.lstrip('-'))} digits)"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = json.dumps(_clipped(value), ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        text = type(value).__name__
    return shortened(text, _EXAMPLE_CHARS).encode("utf-8", "backslashreplace").decode("utf-8")


def _clipped(value: Any) -> Any:
    """Enough of a value to show: the start of a long string, the first items of a container
    (so showing a million-element array costs nothing)."""
    if isinstance(value, str):
        return value[: _EXAMPLE_CHARS + 1]
    if isinstance(value, list):
        return [_clipped(v) for v in value[:4]]
    if isinstance(value, dict):
        return {str(k)[:20]: _clipped(v) for k, v in list(value.items())[:3]}
    if isinstance(value, LongInteger):
        return str(value)[: _EXAMPLE_CHARS + 1]
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return 2**64
    return value


def json_type(value: Any) -> str:
    """What a value is, in JSON's words, with its article: "a string", "a boolean", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | LongInteger):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _count_problem(name: str, value: Any) -> str | None:
    """Why a count is refused, starting with the field's name, or None. A count is a JSON number
    with an integral value from 0 to INT_MAX: `12` and `12.0` are both 12 (contract section 1)."""
    if value is _MISSING:
        return f"{name} is missing"
    if value is None:
        return f"{name} is null"
    if isinstance(value, bool) or not isinstance(value, int | float | LongInteger):
        return f"{name} is {json_type(value)}: {shown(value)}"
    if isinstance(value, LongInteger):
        return f"{name} is {'negative' if value.digits.startswith('-') else 'out of range'}: {shown(value)}"
    if isinstance(value, float):
        if value != value:  # NaN
            return f"{name} is not a number: NaN"
        if value in (float("inf"), float("-inf")):
            return f"{name} is out of range: {shown(value)}"
        if not value.is_integer():
            return f"{name} is a fraction: {shown(value)}"
    if value < 0:
        return f"{name} is negative: {shown(value)}"
    if value > INT_MAX:
        return f"{name} is out of range: {shown(value)}"
    return None


def _company_problem(record: dict[str, Any]) -> str | None:
    """Why a record's company_id cannot be staged, or None."""
    company_id = record.get("company_id", _MISSING)
    if company_id is _MISSING:
        return "missing or blank company_id"
    if not isinstance(company_id, str):
        return (
            "company_id is null"
            if company_id is None
            else f"company_id is {json_type(company_id)}: {shown(company_id)}"
        )
    if not company_id.strip():
        return "missing or blank company_id"
    if _SURROGATE.search(company_id):  # json.loads makes one of "\ud800": not text, and no warehouse takes it
        return f"company_id is not valid Unicode text (a lone surrogate): {shown(company_id)}"
    return length_problem("company_id", company_id.strip(), MAX_COMPANY_ID)


def _date_problem(record: dict[str, Any], day: str) -> str | None:
    value = record.get("date", _MISSING)
    if value is _MISSING:
        return f"date is missing (the requested date is {day})"
    if value != day:
        return f"date is not the requested date {day}: {shown(value)}"
    return None


def _counts_problem(record: dict[str, Any]) -> str | None:
    return _count_problem("active_users", record.get("active_users", _MISSING)) or _count_problem(
        "events", record.get("events", _MISSING)
    )


def record_problem(record: Any, day: str) -> str | None:
    """Why a record cannot be staged, or None when it is valid. A reason starts with the field
    it is about (`active_users is a string: "14"`), so `reason_kind` can group them."""
    if not isinstance(record, dict):
        return f"record is not an object: {shown(record)}"
    return _company_problem(record) or _date_problem(record, day) or _counts_problem(record)


def refused_for_counts(record: Any, day: str) -> str | None:
    """The stripped company_id of a record refused for its counts alone: a valid company_id, the
    requested `day` as its date, and a count that is not one. None for any other record (valid,
    or refused for its id or date): its usage on `day` is unknown, not zero (contract section 3)."""
    if (
        not isinstance(record, dict)
        or _company_problem(record) is not None
        or _date_problem(record, day) is not None
        or _counts_problem(record) is None
    ):
        return None
    return str(record["company_id"]).strip()


def row_of(record: dict[str, Any]) -> UsageRow:
    """The staged row of a record `record_problem` accepts: counts as ints (`12.0` is 12)."""
    return (record["company_id"].strip(), int(record["active_users"]), int(record["events"]))


def reason_kind(reason: str) -> str:
    """A reason without what was there: `active_users is a string: "14"` -> `active_users is a
    string`, so the reasons of a day can be counted by kind."""
    kind = reason.split(": ", 1)[0].split(" (", 1)[0]
    if kind.startswith("conflicting duplicate of company_id"):
        return "conflicting duplicate of company_id"
    return kind


def valid_row(record: Any, day: str) -> UsageRow | None:
    """The staged row of a record that is plainly valid, or None to ask `record_problem`.

    The shape nearly every record has, decided without building a reason: a dict whose counts
    are ints (not bools: type() is exact) or integral floats within INT range, the requested
    date, and a company id that is a non-blank string of at most 32 characters (so at most 64
    UTF-16 code units whatever they are) with no lone surrogate. It accepts only what
    `record_problem` accepts; anything else takes the slow path, which says why."""
    if type(record) is not dict:
        return None
    company_id, users, events = record.get("company_id"), record.get("active_users"), record.get("events")
    if type(users) is not int:
        if type(users) is not float or not users.is_integer():
            return None
        users = int(users)
    if type(events) is not int:
        if type(events) is not float or not events.is_integer():
            return None
        events = int(events)
    if (
        0 <= users <= INT_MAX
        and 0 <= events <= INT_MAX
        and type(company_id) is str
        and record.get("date") == day
    ):
        company_id = company_id.strip()
        if 0 < len(company_id) <= _PLAINLY_SHORT and (
            company_id.isascii() or not _SURROGATE.search(company_id)
        ):
            return (company_id, users, events)
    return None


_PLAINLY_SHORT = MAX_COMPANY_ID // 2  # a character is one or two UTF-16 code units


_COMPANY_ID, _ACTIVE_USERS, _EVENTS, _DATE = map(itemgetter, ("company_id", "active_users", "events", "date"))


def plainly_valid_columns(records: list[Any], day: str) -> Columns | None:
    """The staged rows of a page whose every record is plainly valid, as columns, or None to
    decide record by record.

    Decided a field at a time over the whole page by C loops (map, set, min, max, join) instead
    of Python code per record: every record a dict with the requested date, counts that are
    ints (not bools, not floats) within INT range, and company ids that are ASCII text, one to
    MAX_COMPANY_ID characters once stripped (ASCII: a character is one UTF-16 code unit, and
    no lone surrogate). It accepts only what `record_problem` accepts, and stages `row_of`'s
    row; anything else (a missing field, a float, a non-ASCII id) is decided record by record."""
    if not records or set(map(type, records)) != {dict}:
        return None
    try:
        dates = list(map(_DATE, records))
        company_ids = list(map(_COMPANY_ID, records))
        users = list(map(_ACTIVE_USERS, records))
        events = list(map(_EVENTS, records))
        joined = "".join(company_ids)  # a TypeError unless every id is text
    except (KeyError, TypeError):
        return None
    counts = users + events
    if (
        dates.count(day) != len(dates)
        or set(map(type, counts)) != {int}
        or min(counts) < 0
        or max(counts) > INT_MAX
        or not joined.isascii()
    ):
        return None
    if not joined.isprintable() or " " in joined:  # ASCII whitespace to strip somewhere
        company_ids = list(map(str.strip, company_ids))
    lengths = set(map(len, company_ids))
    if min(lengths) < 1 or max(lengths) > MAX_COMPANY_ID:
        return None
    return company_ids, users, events


def validate_page(result: ValidatedDay, day: str, source_blob: str, records: Iterable[Any]) -> None:
    """Fold one page's records into the day. Pages must be folded in page order.

    A page of plainly valid records of new companies (nearly every page) is added whole; any
    other page is folded record by record, with the same outcome."""
    if isinstance(records, list):
        columns = plainly_valid_columns(records, day)
        if columns is not None and result.add_new_companies(columns):
            result.received += len(records)
            return
    fold_records(result, day, source_blob, records)


def fold_records(result: ValidatedDay, day: str, source_blob: str, records: Iterable[Any]) -> None:
    """Fold one page's records into the day one at a time (what `validate_page` does for any
    page its page-wide check does not take)."""
    index = -1
    for index, record in enumerate(records):  # index counts the records after the loop
        row = valid_row(record, day)
        if row is None:
            problem = record_problem(record, day)
            if problem:
                unknown = refused_for_counts(record, day)
                result.rejected.append(RejectedRecord(source_blob, index, problem, record, unknown))
                continue
            row = row_of(record)
        result.add_row(source_blob, index, row, record)
    result.received += index + 1
