"""Parse one daily CRM snapshot CSV file (contract §2).

Pure and dependency-free on purpose: the blob trigger, the local CLI and the tests
all hand it bytes and get back either a ``ParsedSnapshot`` or a ``CrmFileRejected``.
Nothing here does I/O, so the rules can be tested exhaustively and cheaply.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from shared.domain.text_limits import MAX_COMPANY_ID, MAX_TEXT, length_problem, too_long

if TYPE_CHECKING:
    from _csv import Reader

__all__ = [
    "FIELD_SIZE_LIMIT",
    "MAX_REJECTED_SHARE",
    "NUL_REASON",
    "REQUIRED_COLUMNS",
    "Chunks",
    "CrmFileRejected",
    "CrmReader",
    "CrmRow",
    "ParsedSnapshot",
    "RejectedRow",
    "parse_crm_snapshot",
    "parse_timestamp_utc",
    "snapshot_date_from_name",
]

MAX_REJECTED_SHARE = 0.05
# Generous enough for any real name/notes column, small enough that a runaway quote
# (which swallows the rest of the file into one field) is caught with a clear reason.
FIELD_SIZE_LIMIT = 16 * 1024 * 1024

REQUIRED_COLUMNS: tuple[str, ...] = ("company_id", "name", "country", "industry_tag", "last_contact_at")
_NAME_ALIAS = "company_name"

# Reasons and messages must stay on one line and stay short, whatever the data holds.
_MAX_SHOWN = 80


class CrmRow(NamedTuple):
    """One staged company; a NamedTuple keeps a million rows cheap."""

    company_id: str
    company_name: str | None
    country: str | None
    industry_tag: str | None
    last_contact_at: datetime | None  # naive, UTC


@dataclass(frozen=True)
class RejectedRow:
    """A quarantined data record, with enough context to find and fix it in the file."""

    line: int  # 1-based physical line where the record starts
    reason: str  # short, one line
    fields: dict[str, str]  # raw values keyed by the header names as written in the file


@dataclass(frozen=True)
class ParsedSnapshot:
    snapshot_date: date
    rows: list[CrmRow]  # winning rows, in file order
    rejected: list[RejectedRow]  # in file order
    warnings: list[str]
    data_rows: int  # data records read (header and fully blank lines excluded)


class CrmFileRejected(ValueError):
    """The whole file is refused; ``str(exc)`` is a clear one-line reason.

    ``data_rows`` and ``rejected`` are filled in when the parse got that far, so the
    caller can quarantine the offending rows alongside the file.
    """

    def __init__(
        self,
        reason: str,
        *,
        data_rows: int | None = None,
        rejected: Sequence[RejectedRow] = (),
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data_rows = data_rows
        self.rejected: list[RejectedRow] = list(rejected)

    def __str__(self) -> str:
        return self.reason


# --------------------------------------------------------------------------- dates


# The three ways a file name may write its day (contract §2): YYYY-MM-DD, YYYY_MM_DD, and
# YYYYMMDD as a run of exactly 8 digits (a longer run is an id or a timestamp, not a date).
# An overlapping search (lookahead) tries every position in order, so the first calendar date
# wins and "2026-13-2026-10-01" still finds the real one; [0-9] rather than \d because \d also
# matches non-ASCII digits.
_NAME_DATE = re.compile(
    r"(?=(?P<y>[0-9]{4})(?P<sep>[-_])(?P<m>[0-9]{2})(?P=sep)(?P<d>[0-9]{2})"
    r"|(?<![0-9])(?P<y8>[0-9]{4})(?P<m8>[0-9]{2})(?P<d8>[0-9]{2})(?![0-9]))"
)
_NAME_DATE_LIKE = re.compile(r"[0-9]{4}([-_])[0-9]{2}\1[0-9]{2}|(?<![0-9])[0-9]{8}(?![0-9])")
NAME_DATE_FORMS = "YYYY-MM-DD, YYYY_MM_DD or YYYYMMDD"


def date_in_name(blob_name: str) -> date | None:
    """The first calendar date in the blob's file name, written YYYY-MM-DD, YYYY_MM_DD or
    YYYYMMDD (the last path segment only: a dated folder says when it was filed, not what day
    the snapshot describes)."""
    file_name = blob_name.rsplit("/", 1)[-1]
    for match in _NAME_DATE.finditer(file_name):
        year, month, day = match.group("y", "m", "d") if match["y"] else match.group("y8", "m8", "d8")
        try:
            return date(int(year), int(month), int(day))
        except ValueError:
            continue  # e.g. 2026-13-01 or 20261131: not a calendar date, keep looking
    return None


def snapshot_date_from_name(blob_name: str, created_at: datetime) -> date:
    """The first calendar date in the blob's file name (`date_in_name`), else the UTC day it
    was created.

    A naive ``created_at`` is taken to be UTC.
    """
    named = date_in_name(blob_name)
    if named is not None:
        return named
    if created_at.tzinfo is not None:
        created_at = created_at.astimezone(UTC)
    return created_at.date()


def no_date_warning(blob_name: str, snapshot_date: date) -> str:
    """The contract's fallback, said out loud: which day an undated file became and how to name
    it (a file named without a date is easy to drop on the wrong day, and the next undated one
    replaces it)."""
    file_name = blob_name.rsplit("/", 1)[-1]
    almost = _NAME_DATE_LIKE.search(file_name)
    which = (
        f"no calendar date in the file name ({almost.group(0)} is not one)"
        if almost
        else "no date in the file name"
    )
    stem, dot, ext = file_name.rpartition(".")
    example = f"{stem}_{snapshot_date}.{ext}" if dot and stem else f"{file_name}_{snapshot_date}.csv"
    return (
        f"{which}; staged as the snapshot of {snapshot_date} (the UTC day it was uploaded);"
        f" name the file after the day it describes, as {NAME_DATE_FORMS} (e.g. {_show(example)})"
    )


_combine = datetime.combine


def parse_timestamp_utc(text: str) -> datetime | None:
    """ISO-8601 date or date-time -> naive UTC datetime; blank -> None.

    No offset means UTC. Raises ``ValueError`` for anything else. ``fromisoformat``
    does the heavy lifting (it is C and fast) but is more liberal than the contract,
    so the text must also start with an extended ``YYYY-MM-DD`` date (no
    ``20260101``, no week dates) and use ``T``, ``t`` or a space before the time (3.11
    would take any character there). ``Z`` and ``z`` both mean UTC (RFC 3339); 3.11's
    ``fromisoformat`` only knows ``Z``.
    """
    s = text.strip()
    if not s:
        return None
    n = len(s)
    # Index checks only, no slicing: this runs once per row. Digits need no check of
    # our own: with '-' at [4] and [7], CPython's fromisoformat only succeeds on an
    # ASCII YYYY-MM-DD calendar date (a week date has a digit at [7]). isascii() is
    # O(1) and keeps that true on a pure-Python datetime, whose int() takes any digit.
    if n < 10 or s[4] != "-" or s[7] != "-" or (n > 10 and s[10] not in "Tt ") or not s.isascii():
        raise ValueError(f"not an ISO-8601 date or date-time: {_quote(s)}")
    try:
        parsed = datetime.fromisoformat(s if s[-1] != "z" else s[:-1] + "Z")
        offset = parsed.utcoffset()
        if offset is None:
            return parsed  # no offset means UTC already
        # combine(dt, dt.time()) drops tzinfo ~5x faster than replace(tzinfo=None).
        return _combine(parsed, parsed.time()) - offset
    except (ValueError, OverflowError) as exc:  # OverflowError: 0001-01-01T00:00+01:00
        raise ValueError(f"not an ISO-8601 date or date-time: {_quote(s)}") from exc


# --------------------------------------------------------------------------- parsing

Chunks = Callable[[], Iterable[bytes]]
"""The file's bytes in pieces, from the start, each time it is called: a large file is read in
passes without ever being held whole."""

NUL_REASON = "file contains NUL bytes; not a CSV text file (UTF-16 or binary?)"


class CrmReader:
    """One CRM snapshot file, read in passes over its chunks.

    `valid_rows()` is one pass: the valid rows with their lines, in file order, while row-level
    problems collect in `rejected` and file-level ones (encoding, CSV syntax, header, no data)
    raise ``CrmFileRejected``. `duplicate_losers` finds the rows a later one replaces, from one
    fingerprint per row and a second look at the few candidates; `finish` applies the whole-file
    rules. `parse_crm_snapshot` composes them for a file in memory; the loader composes them over
    a blob, so a two-million-row drop is checked and staged in bounded memory.
    """

    def __init__(self, chunks: Chunks, blob_name: str, created_at: datetime) -> None:
        self.chunks = chunks
        self.blob_name = blob_name
        self.snapshot_date = snapshot_date_from_name(blob_name, created_at)
        self.data_rows = 0
        self.rejected: list[RejectedRow] = []
        self.columns: _Columns | None = None

    def valid_rows(self) -> Iterator[tuple[int, CrmRow]]:
        """(start line, row) of every valid data row, in file order. Each call is a new pass."""
        self.data_rows, self.rejected = 0, []
        # Set on every pass: the limit is process-global and other code may have changed it.
        csv.field_size_limit(FIELD_SIZE_LIMIT)
        reader = csv.reader(_text_stream(self.chunks()), strict=True)
        header_fields, prev_end = self._header(reader)  # prev_end: line the previous record ended on
        self.columns = columns = _resolve_header(header_fields)

        i_id, i_name, i_country, i_tag, i_ts = columns.indexes
        width = len(header_fields)
        keys = columns.keys
        rejected = self.rejected
        # Building rows through tuple.__new__ skips the generated NamedTuple.__new__, which
        # is the single most expensive call in the loop.
        new_row = tuple.__new__
        row_type = CrmRow
        parse_ts = parse_timestamp_utc
        # country and industry_tag take a handful of values: one string object per value
        # instead of one per row saves ~100 MB on a million rows.
        pool: dict[str, str] = {}
        shared = pool.setdefault
        data_rows = 0
        half_text = MAX_TEXT // 2  # while the three texts together are no longer, none is too long
        try:
            for record in reader:
                start = prev_end + 1
                prev_end = reader.line_num
                if len(record) != width:
                    if _is_blank(record):
                        continue  # blank lines are not data rows
                    data_rows += 1
                    rejected.append(
                        RejectedRow(start, f"expected {width} fields, got {len(record)}", _raw(keys, record))
                    )
                    continue
                data_rows += 1
                company_id = record[i_id].strip()
                if not company_id:
                    rejected.append(RejectedRow(start, "blank company_id", _raw(keys, record)))
                    continue
                if len(company_id) > MAX_COMPANY_ID // 2 and too_long(company_id, MAX_COMPANY_ID):
                    reason = length_problem("company_id", company_id, MAX_COMPANY_ID)
                    rejected.append(RejectedRow(start, str(reason), _raw(keys, record)))
                    continue
                raw_ts = record[i_ts]
                try:
                    last_contact_at = parse_ts(raw_ts)
                except ValueError:
                    reason = f"unparseable last_contact_at {_quote(raw_ts.strip())}"
                    rejected.append(RejectedRow(start, reason, _raw(keys, record)))
                    continue
                name = record[i_name].strip()
                country = record[i_country].strip()
                industry_tag = record[i_tag].strip()
                if len(name) + len(country) + len(industry_tag) > half_text and (
                    problem := _text_problem(name, country, industry_tag)
                ):
                    rejected.append(RejectedRow(start, problem, _raw(keys, record)))
                    continue
                self.data_rows = data_rows
                yield (
                    start,
                    new_row(
                        row_type,
                        (
                            company_id,
                            name or None,
                            shared(country, country) if country else None,
                            shared(industry_tag, industry_tag) if industry_tag else None,
                            last_contact_at,
                        ),
                    ),
                )
        except csv.Error as exc:
            raise CrmFileRejected(_csv_error_reason(exc, prev_end + 1), data_rows=data_rows) from exc
        except UnicodeDecodeError:
            raise _not_utf8(self.chunks) from None
        self.data_rows = data_rows
        if data_rows == 0:
            raise CrmFileRejected("no data rows", data_rows=0)

    def _header(self, reader: Reader) -> tuple[list[str], int]:
        """The header (the first record that is not blank) and the line it ends on."""
        header_end = 0
        try:
            for record in reader:
                header_end = reader.line_num
                if not _is_blank(record):
                    return record, header_end
        except csv.Error as exc:
            raise CrmFileRejected(_csv_error_reason(exc, header_end + 1), data_rows=0) from exc
        except UnicodeDecodeError:
            raise _not_utf8(self.chunks) from None
        raise CrmFileRejected("empty file", data_rows=0)

    def duplicate_losers(self, fingerprints: Sequence[int], lines: Sequence[int]) -> list[RejectedRow]:
        """The rows a later row of the same company_id replaces (the last one wins), quarantined
        as duplicates. `fingerprints` are hash(company_id) of the valid rows and `lines` their
        lines, in file order: rows with a repeated fingerprint are read again to compare their
        real ids (a fingerprint shared by two ids is no duplicate)."""
        ordered = sorted(fingerprints)
        candidates = {a for a, b in itertools.pairwise(ordered) if a == b}
        del ordered
        if not candidates or self.columns is None:
            return []
        candidate_lines = [line for fp, line in zip(fingerprints, lines, strict=True) if fp in candidates]
        raw = _raw_records_at(self.chunks, set(candidate_lines), self.columns.keys)
        id_key = self.columns.keys[self.columns.indexes[0]]
        by_id: dict[str, list[int]] = {}
        for line in candidate_lines:  # in file order
            by_id.setdefault(raw[line][id_key].strip(), []).append(line)
        losers = [
            RejectedRow(
                line,
                f"duplicate company_id {_show(company_id)} (the later row on line {found[-1]} wins)",
                raw[line],
            )
            for company_id, found in by_id.items()
            for line in found[:-1]
        ]
        return sorted(losers, key=lambda r: r.line)

    def finish(
        self, losers: Sequence[RejectedRow], max_rejected_share: float = MAX_REJECTED_SHARE
    ) -> tuple[list[RejectedRow], list[str]]:
        """The whole-file rules after a pass: every quarantined row (in line order) and the
        warnings, or ``CrmFileRejected`` when more than `max_rejected_share` were quarantined."""
        rejected = sorted([*self.rejected, *losers], key=lambda r: r.line)
        if rejected and _over_limit(len(rejected), self.data_rows, max_rejected_share):
            share = len(rejected) / self.data_rows
            first = rejected[0]
            raise CrmFileRejected(
                f"{len(rejected)} of {self.data_rows} data rows quarantined ({share:.1%}), "
                f"above the {max_rejected_share * 100:g}% limit; first: line {first.line}: {first.reason}",
                data_rows=self.data_rows,
                rejected=rejected,
            )
        warnings = list(self.columns.warnings) if self.columns else []
        if date_in_name(self.blob_name) is None:
            warnings.append(no_date_warning(self.blob_name, self.snapshot_date))
        return rejected, warnings


def parse_crm_snapshot(
    data: bytes,
    blob_name: str,
    created_at: datetime,
    max_rejected_share: float = MAX_REJECTED_SHARE,
) -> ParsedSnapshot:
    """Parse a whole CRM snapshot file held in memory, or raise ``CrmFileRejected``.

    Row-level problems are quarantined into ``rejected``; file-level problems (encoding,
    CSV syntax, header, no data, too many quarantined rows) reject the whole file so
    that a half-broken export never replaces a good snapshot.
    """
    if b"\x00" in data:
        # UTF-16 and binary uploads are often "valid" UTF-8, and csv would choke on NUL anyway.
        raise CrmFileRejected(NUL_REASON)
    reader = CrmReader(lambda: (data,), blob_name, created_at)
    rows: list[CrmRow] = []
    fingerprints, lines = array("q"), array("q")
    for line, row in reader.valid_rows():
        rows.append(row)
        fingerprints.append(hash(row[0]))
        lines.append(line)
    losers = reader.duplicate_losers(fingerprints, lines)
    rejected, warnings = reader.finish(losers, max_rejected_share)
    if losers:
        lost = {r.line for r in losers}
        rows = [row for row, line in zip(rows, lines, strict=True) if line not in lost]
    return ParsedSnapshot(reader.snapshot_date, rows, rejected, warnings, reader.data_rows)


# --------------------------------------------------------------------------- helpers


class _ChunkReader(io.RawIOBase):
    """A readable binary stream over the chunks of a file."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _text_stream(chunks: Iterable[bytes]) -> io.TextIOWrapper:
    """Strict UTF-8 text (BOM dropped), decoded lazily as csv reads it.

    newline="" hands csv the line endings untouched, as RFC 4180 quoting needs. A streaming
    decoder rather than StringIO(data.decode()): StringIO keeps 4 bytes per character, which
    for a 75 MB file is ~300 MB of peak memory for nothing.
    """
    raw = io.BufferedReader(_ChunkReader(chunks), buffer_size=1024 * 1024)
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")


# What a user does about it: most non-UTF-8 CSVs are Excel's "CSV (Comma delimited)", which is
# Windows-1252.
SAVE_AS_UTF8 = "save the file as UTF-8 (in Excel: Save As, CSV UTF-8)"


def _not_utf8(chunks: Chunks) -> CrmFileRejected:
    """One-line rejection naming the line, offset and value of the first bad byte, and what to do
    (the failure path only: the file is read once more, chunk by chunk, counting bytes and line
    breaks)."""
    offset, line, carry = 0, 1, b""  # carry: the start of a character cut by a chunk's end
    for chunk in [*chunks(), None]:
        data = carry + (chunk or b"")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            cut = chunk is not None and exc.reason == "unexpected end of data" and exc.start >= len(data) - 3
            if not cut:
                line += data.count(b"\n", 0, exc.start)
                return CrmFileRejected(
                    f"not valid UTF-8 on line {line} (byte 0x{data[exc.start]:02X} at offset"
                    f" {offset + exc.start}: {exc.reason}); {SAVE_AS_UTF8}"
                )
            carry = data[exc.start :]
            data = data[: exc.start]
        else:
            carry = b""
        offset += len(data)
        line += data.count(b"\n")
    return CrmFileRejected(f"not valid UTF-8; {SAVE_AS_UTF8}")


def _text_problem(name: str, country: str, industry_tag: str) -> str | None:
    """What is wrong with the first text column that is too long, if one is."""
    return (
        length_problem("name", name, MAX_TEXT)
        or length_problem("country", country, MAX_TEXT)
        or length_problem("industry_tag", industry_tag, MAX_TEXT)
    )


def _is_blank(record: list[str]) -> bool:
    # A blank line, or whitespace an editor left behind. Never a header or data row:
    # those have at least five fields.
    return not record or (len(record) == 1 and not record[0].strip())


@dataclass(frozen=True)
class _Columns:
    indexes: tuple[int, int, int, int, int]  # in REQUIRED_COLUMNS order
    keys: list[str]  # the file's own names, used for RejectedRow.fields
    warnings: list[str]


def _resolve_header(header: list[str]) -> _Columns:
    # Keys keep the file's spelling (only padding and stray BOMs go) so quarantined
    # rows read like the file; lookups use the lower-cased form.
    keys = [name.strip(" \t\r\n\ufeff") for name in header]
    keys = [key or f"(column {pos})" for pos, key in enumerate(keys, start=1)]
    seen = _column_positions([name.strip(" \t\r\n\ufeff").lower() for name in header])
    if "name" not in seen and _NAME_ALIAS in seen:
        seen["name"] = seen.pop(_NAME_ALIAS)
    missing = [col for col in REQUIRED_COLUMNS if col not in seen]
    if missing:
        raise _missing_columns(missing, header)

    i_id, i_name, i_country, i_tag, i_contact = (seen[col] for col in REQUIRED_COLUMNS)
    indexes = (i_id, i_name, i_country, i_tag, i_contact)
    used = set(indexes)
    extra = [keys[pos] for pos in range(len(header)) if pos not in used]
    warnings = [f"ignored extra columns: {', '.join(map(_show, extra))}"] if extra else []
    return _Columns(indexes=indexes, keys=keys, warnings=warnings)


def _column_positions(normalised: list[str]) -> dict[str, int]:
    """Each named column's position, or ``CrmFileRejected`` naming the columns found twice."""
    seen: dict[str, int] = {}
    duplicated: list[str] = []
    for pos, name in enumerate(normalised):
        if not name:
            continue  # unnamed columns (a trailing comma) are extra, never duplicates
        if name in seen and name not in duplicated:
            duplicated.append(name)
        seen.setdefault(name, pos)
    if duplicated:
        raise CrmFileRejected(f"duplicate column(s) in header: {', '.join(map(_show, duplicated))}")
    return seen


def _missing_columns(missing: list[str], header: list[str]) -> CrmFileRejected:
    """The rejection naming the required columns the header lacks, and what it holds instead."""
    shown = ", ".join(f"{col} (or {_NAME_ALIAS})" if col == "name" else col for col in missing)
    found = _show(",".join(header), limit=200)
    return CrmFileRejected(
        f"missing required column(s): {shown}; header has {len(header)} column(s): {found}"
        + _delimiter_hint(header)
    )


def _delimiter_hint(header: list[str]) -> str:
    """A header read as one column that holds `;`, tab or `|`: the export used another delimiter."""
    if len(header) != 1:
        return ""
    for delimiter, shown in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if header[0].count(delimiter) >= 2:
            return f"; it looks delimited by {shown}: the file must be comma-separated"
    return ""


def _raw(keys: list[str], record: list[str]) -> dict[str, str]:
    """The record as the file had it; values past the header get positional keys."""
    fields = dict(zip(keys, record, strict=False))
    for pos in range(len(keys), len(record)):
        fields[f"(column {pos + 1})"] = record[pos]
    return fields


def _raw_records_at(chunks: Chunks, lines: set[int], keys: list[str]) -> dict[int, dict[str, str]]:
    """Re-read the raw records starting on ``lines``.

    Only needed for duplicates, which are rare; re-reading beats holding on to every
    raw record of a million-row file just in case.
    """
    found: dict[int, dict[str, str]] = {}
    reader = csv.reader(_text_stream(chunks()), strict=True)
    prev_end = 0
    for record in reader:
        start = prev_end + 1
        prev_end = reader.line_num
        if start in lines:
            found[start] = _raw(keys, record)
            if len(found) == len(lines):
                break
    return found


def _over_limit(rejected: int, data_rows: int, max_share: float) -> bool:
    # Integer arithmetic on a share rounded to 1e-9, so a share exactly at the limit is
    # never tipped over it by float noise (0.7 * 90 == 62.99999999999999).
    scale = 1_000_000_000
    return rejected * scale > round(max_share * scale) * data_rows


def _csv_error_reason(exc: csv.Error, record_start: int) -> str:
    message = str(exc)
    where = f" (record starting on line {record_start})"
    if "unexpected end of data" in message:
        return f"unterminated quoted field{where}"
    if "field larger than field limit" in message:
        return f"field larger than the {FIELD_SIZE_LIMIT // (1024 * 1024)} MiB limit{where}"
    return f"malformed CSV{where}: {_show(message)}"


def _show(value: str, limit: int = _MAX_SHOWN) -> str:
    """Value as-is when it is short and printable, else a truncated repr; always one line."""
    if len(value) <= limit and value.isprintable():
        return value
    return _quote(value, limit)


def _quote(value: str, limit: int = _MAX_SHOWN) -> str:
    if len(value) > limit:
        return repr(value[:limit]) + "..."
    return repr(value)
