"""Tests for shared.domain.crm_csv: the CRM snapshot file rules of contract §2."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.crm_csv import (
    FIELD_SIZE_LIMIT,
    MAX_REJECTED_SHARE,
    CrmFileRejected,
    CrmReader,
    CrmRow,
    ParsedSnapshot,
    RejectedRow,
    date_in_name,
    parse_crm_snapshot,
    parse_timestamp_utc,
    snapshot_date_from_name,
)
from tests.support import GOLDEN

HEADER = "company_id,name,country,industry_tag,last_contact_at"
NAME = "crm-drop/companies_2026-10-01.csv"
CREATED = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
BOM = b"\xef\xbb\xbf"


def csv_bytes(*lines: str, newline: str = "\n", bom: bool = False) -> bytes:
    """A file from physical lines (each written exactly as given, then ``newline``)."""
    body = "".join(line + newline for line in lines).encode("utf-8")
    return (BOM if bom else b"") + body


def parse(data: bytes, blob_name: str = NAME, **kwargs: float) -> ParsedSnapshot:
    return parse_crm_snapshot(data, blob_name, CREATED, **kwargs)


def rejected_reason(data: bytes, **kwargs: float) -> CrmFileRejected:
    with pytest.raises(CrmFileRejected) as info:
        parse(data, **kwargs)
    assert "\n" not in str(info.value), "reasons must be one line"
    assert str(info.value) == info.value.reason
    return info.value


def good_rows(n: int, start: int = 0) -> list[str]:
    return [f"c-{i},Company {i},US,saas,2026-09-01" for i in range(start, start + n)]


# --------------------------------------------------------------------------- happy path


def test_plain_file_gives_typed_rows_in_file_order() -> None:
    data = csv_bytes(
        HEADER,
        "c-2,Globex,JP,edu,2026-08-14T03:31:00+09:00",
        "c-1,Acme,US,saas,",
    )
    parsed = parse(data)
    assert parsed == ParsedSnapshot(
        snapshot_date=date(2026, 10, 1),
        rows=[
            CrmRow("c-2", "Globex", "JP", "edu", datetime(2026, 8, 13, 18, 31)),
            CrmRow("c-1", "Acme", "US", "saas", None),
        ],
        rejected=[],
        warnings=[],
        data_rows=2,
    )
    assert all(type(row) is CrmRow for row in parsed.rows)


def test_values_are_stripped_and_empty_optional_values_become_none() -> None:
    data = csv_bytes(HEADER, "  c-1 ,  Acme  , US ,  ,  2026-07-10  ", "c-2,   ,,saas,")
    parsed = parse(data)
    assert parsed.rows == [
        CrmRow("c-1", "Acme", "US", None, datetime(2026, 7, 10)),
        CrmRow("c-2", None, None, "saas", None),
    ]


def test_quoted_commas_quotes_and_newlines_survive() -> None:
    data = csv_bytes(
        HEADER,
        'c-1,"Umbrella, Inc.",FR,retail,2026-07-25',
        'c-2,"The ""Best"" Co",US,saas,',
        'c-3,"Stark',
        ' Industries 2 ",JP,fintech,2026-08-14T03:31:00+09:00',
        '   ,"No',
        'body",DE,x,',
    )
    parsed = parse(data, max_rejected_share=0.5)
    assert [row.company_name for row in parsed.rows] == [
        "Umbrella, Inc.",
        'The "Best" Co',
        "Stark\n Industries 2",  # outer whitespace stripped, the inner newline kept
    ]
    assert parsed.data_rows == 4
    # c-3 occupies physical lines 4-5; the rejected record starts on line 6 and ends on 7.
    assert [(r.line, r.fields["name"]) for r in parsed.rejected] == [(6, "No\nbody")]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [False, True])
def test_bom_and_line_endings_do_not_change_the_result(newline: str, bom: bool) -> None:
    lines = (
        HEADER,
        'c-1,"Stark\r\nIndustries",JP,fintech,',
        "c-2,Acme,US,saas,2026-07-10",
        "  ,Nobody,DE,x,",
    )
    parsed = parse(csv_bytes(*lines, newline=newline, bom=bom), max_rejected_share=0.5)
    assert parsed.rows == [
        CrmRow("c-1", "Stark\r\nIndustries", "JP", "fintech", None),  # quoted: kept verbatim
        CrmRow("c-2", "Acme", "US", "saas", datetime(2026, 7, 10)),
    ]
    # The BOM must not end up in the first header name, nor \r in the last column.
    assert parsed.rejected == [
        RejectedRow(
            5,  # the quoted newline makes c-1 two physical lines
            "blank company_id",
            {
                "company_id": "  ",
                "name": "Nobody",
                "country": "DE",
                "industry_tag": "x",
                "last_contact_at": "",
            },
        )
    ]


def test_blank_and_whitespace_only_lines_are_skipped_and_not_counted() -> None:
    data = csv_bytes("", HEADER, "", "c-1,Acme,US,saas,", "   ", "\t", "c-2,Globex,JP,edu,", "")
    parsed = parse(data)
    assert [row.company_id for row in parsed.rows] == ["c-1", "c-2"]
    assert parsed.data_rows == 2
    assert parsed.rejected == []


def test_file_without_trailing_newline_parses() -> None:
    parsed = parse(f"{HEADER}\nc-1,Acme,US,saas,2026-07-10".encode())
    assert parsed.rows == [CrmRow("c-1", "Acme", "US", "saas", datetime(2026, 7, 10))]


# --------------------------------------------------------------------------- header


def test_header_is_case_insensitive_in_any_order_with_padding() -> None:
    data = csv_bytes(
        " Last_Contact_At ,INDUSTRY_TAG,Country,  COMPANY_ID,Name",
        "2026-07-10,saas,US,c-1,Acme",
    )
    parsed = parse(data)
    assert parsed.rows == [CrmRow("c-1", "Acme", "US", "saas", datetime(2026, 7, 10))]
    assert parsed.warnings == []


def test_company_name_is_accepted_for_name() -> None:
    data = csv_bytes("company_id,Company_Name,country,industry_tag,last_contact_at", "c-1,Acme,US,saas,")
    parsed = parse(data)
    assert parsed.rows[0].company_name == "Acme"
    assert parsed.warnings == []


def test_name_wins_over_company_name_which_becomes_an_extra_column() -> None:
    data = csv_bytes(
        "company_id,company_name,name,country,industry_tag,last_contact_at",
        "c-1,Old Name,Acme,US,saas,",
    )
    parsed = parse(data)
    assert parsed.rows[0].company_name == "Acme"
    assert parsed.warnings == ["ignored extra columns: company_name"]


def test_extra_columns_are_ignored_with_a_warning() -> None:
    data = csv_bytes(
        "company_id,account_owner,name,country,industry_tag,last_contact_at,Region",
        "c-1,owner@example.com,Acme,US,saas,,EMEA",
    )
    parsed = parse(data)
    assert parsed.rows == [CrmRow("c-1", "Acme", "US", "saas", None)]
    assert parsed.warnings == ["ignored extra columns: account_owner, Region"]


def test_rejected_fields_are_keyed_by_the_files_own_header_names() -> None:
    data = csv_bytes(
        "COMPANY_ID,Name,country,industry_tag,Last_Contact_At,owner",
        "  ,Nobody,DE,x,,me",
        *[row + ",someone" for row in good_rows(30)],
    )
    parsed = parse(data)
    assert parsed.rejected == [
        RejectedRow(
            2,
            "blank company_id",
            {
                "COMPANY_ID": "  ",  # raw, not stripped
                "Name": "Nobody",
                "country": "DE",
                "industry_tag": "x",
                "Last_Contact_At": "",
                "owner": "me",
            },
        )
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("company_id,name,country,last_contact_at", "missing required column(s): industry_tag;"),
        (
            "company_id,country,industry_tag,last_contact_at",
            "missing required column(s): name (or company_name);",
        ),
        (
            "company_id;name;country;industry_tag;last_contact_at",
            "missing required column(s): company_id, name (or company_name), country, industry_tag, "
            "last_contact_at; header has 1 column(s): company_id;name;country;industry_tag;last_contact_at",
        ),
    ],
)
def test_missing_required_column_rejects_the_file(header: str, expected: str) -> None:
    exc = rejected_reason(csv_bytes(header, *good_rows(3)))
    assert str(exc).startswith(expected)


@pytest.mark.parametrize(
    "header",
    [
        "company_id,name,country,industry_tag,last_contact_at,NAME",
        "company_id,name,country,industry_tag,last_contact_at,company_name,Company_Name",
    ],
)
def test_duplicate_header_names_reject_the_file(header: str) -> None:
    exc = rejected_reason(csv_bytes(header, "c-1,Acme,US,saas,,x", "c-2,B,US,saas,,y"))
    assert str(exc).startswith("duplicate column(s) in header: ")


def test_unnamed_trailing_columns_are_extras_not_duplicates() -> None:
    parsed = parse(csv_bytes(HEADER + ",,", "c-1,Acme,US,saas,,,"))
    assert parsed.rows == [CrmRow("c-1", "Acme", "US", "saas", None)]
    assert parsed.warnings == ["ignored extra columns: (column 6), (column 7)"]


# --------------------------------------------------------------------------- whole-file rejections


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (BOM, "empty file"),
        (b"\n\r\n  \n", "empty file"),
        (csv_bytes(HEADER), "no data rows"),
        (csv_bytes(HEADER, "", "  ", newline="\r\n", bom=True), "no data rows"),
    ],
)
def test_empty_and_header_only_files_are_rejected(data: bytes, reason: str) -> None:
    exc = rejected_reason(data)
    assert exc.reason == reason
    assert exc.data_rows == 0
    assert exc.rejected == []


SAVE_AS = "save the file as UTF-8 (in Excel: Save As, CSV UTF-8)"


def test_invalid_utf8_is_rejected_with_the_offset_and_line() -> None:
    data = csv_bytes(HEADER, "c-1,Acme,US,saas,").replace(b"Acme", "Müller".encode("latin-1"))
    exc = rejected_reason(data)
    offset = data.index(b"\xfc")
    assert exc.reason == (
        f"not valid UTF-8 on line 2 (byte 0xFC at offset {offset}: invalid start byte); {SAVE_AS}"
    )


def test_a_windows_1252_export_is_rejected_naming_the_line_and_saying_to_save_as_utf8() -> None:
    # Issue 22 / contract §2: before, the reason named an offset and no remedy.
    text = "\n".join([HEADER, "c-1,Acme,US,saas,2026-09-01", "c-2,Zoë & Co,SE,edu,2026-09-04", ""])
    data = text.encode("cp1252")
    exc = rejected_reason(data)
    offset = data.index(b"\xeb")
    assert exc.reason == (
        f"not valid UTF-8 on line 3 (byte 0xEB at offset {offset}: invalid continuation byte); {SAVE_AS}"
    )
    # The same through the loader's streaming reader, the bad byte in a later piece than the line.
    reader = CrmReader(
        lambda: (data[: offset - 3], data[offset - 3 : offset + 1], data[offset + 1 :]), NAME, CREATED
    )
    with pytest.raises(CrmFileRejected) as info:
        list(reader.valid_rows())
    assert info.value.reason == exc.reason


def test_invalid_utf8_offset_counts_the_bom_and_far_into_the_file() -> None:
    # Far past the streaming decoder's first chunk, so chunk-relative offsets would show.
    data = csv_bytes(HEADER, *good_rows(5000), "c-x,Caf\xe9,FR,edu,", bom=True)
    data = data.replace("Caf\xe9".encode(), b"Caf\xe9")
    exc = rejected_reason(data)
    offset = data.index(b"Caf\xe9") + 3
    assert exc.reason == (
        f"not valid UTF-8 on line 5002 (byte 0xE9 at offset {offset}: invalid continuation byte); {SAVE_AS}"
    )


@pytest.mark.parametrize(
    "data",
    [
        csv_bytes(HEADER, "c-1,Ac\x00me,US,saas,"),
        csv_bytes(HEADER, "c-1,Acme,US,saas,").decode().encode("utf-16"),
        csv_bytes(HEADER, "c-1,Acme,US,saas,").decode().encode("utf-16-le"),
    ],
)
def test_nul_bytes_reject_the_file_as_binary(data: bytes) -> None:
    assert rejected_reason(data).reason == "file contains NUL bytes; not a CSV text file (UTF-16 or binary?)"


def test_unterminated_quote_rejects_the_file_naming_the_line() -> None:
    data = csv_bytes(HEADER, "c-1,Acme,US,saas,", "", 'c-2,"Globex,JP,edu,', "c-3,Initech,DE,media,")
    exc = rejected_reason(data)
    assert exc.reason == "unterminated quoted field (record starting on line 4)"
    assert exc.data_rows == 1


def test_unterminated_quote_in_the_header_rejects_the_file() -> None:
    exc = rejected_reason(csv_bytes('company_id,"name,country,industry_tag,last_contact_at', "c-1,A,US,x,"))
    assert exc.reason == "unterminated quoted field (record starting on line 1)"


def test_text_after_a_closing_quote_rejects_the_file() -> None:
    exc = rejected_reason(csv_bytes(HEADER, 'c-1,"Acme"x,US,saas,'))
    assert exc.reason == "malformed CSV (record starting on line 2): ',' expected after '\"'"


def test_field_above_the_size_limit_rejects_the_file() -> None:
    huge = "x" * (FIELD_SIZE_LIMIT + 1)
    exc = rejected_reason(csv_bytes(HEADER, "c-1,Acme,US,saas,", f'c-2,"{huge}",US,saas,'))
    assert exc.reason == "field larger than the 16 MiB limit (record starting on line 3)"


def test_large_fields_below_the_limit_parse_even_if_someone_lowered_the_global_limit() -> None:
    big = "y" * (1024 * 1024)  # far above csv's default 128 KiB, in an extra (ignored) column
    original = csv.field_size_limit(1000)
    try:
        parsed = parse(csv_bytes(HEADER + ",notes", f'c-1,Acme,US,saas,,"{big}"'))
    finally:
        csv.field_size_limit(original)
    assert [row.company_id for row in parsed.rows] == ["c-1"] and parsed.rejected == []
    assert parsed.warnings == ["ignored extra columns: notes"]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("name", "N" * 401, "name longer than 400 characters"),
        ("country", "C" * 401, "country longer than 400 characters"),
        ("industry_tag", "T" * 401, "industry_tag longer than 400 characters"),
        ("name", "\U0001f600" * 201, "name longer than 400 UTF-16 code units"),  # 201 characters, 402 units
        ("company_id", "\U0001f600" * 33, "company_id longer than 64 UTF-16 code units"),  # 33 characters
    ],
)
def test_texts_over_their_nvarchar_length_are_quarantined(field: str, value: str, reason: str) -> None:
    values = {"company_id": "c-bad", "name": "Acme", "country": "US", "industry_tag": "saas", field: value}
    row = ",".join(values[c] for c in ("company_id", "name", "country", "industry_tag")) + ","
    parsed = parse(csv_bytes(HEADER, row, *good_rows(40)))
    assert len(parsed.rows) == 40 and [r.reason[: len(reason)] for r in parsed.rejected] == [reason]


def test_texts_at_their_limit_are_staged() -> None:
    rows = [
        "c-1," + "N" * 400 + "," + "C" * 400 + "," + "T" * 400 + ",",
        "c-2," + "\U0001f600" * 200 + ",US,saas,",  # 400 UTF-16 code units
        "\U0001f600" * 32 + ",Acme,US,saas,",  # a 64-unit company_id
    ]
    parsed = parse(csv_bytes(HEADER, *rows))
    assert parsed.rejected == [] and len(parsed.rows) == 3


# --------------------------------------------------------------------------- row rules


def test_wrong_field_count_is_quarantined_with_the_raw_values() -> None:
    data = csv_bytes(HEADER, "c-1,Acme,US,saas,,extra,more", "c-2,Globex,JP", *good_rows(40))
    parsed = parse(data)
    assert parsed.rejected == [
        RejectedRow(
            2,
            "expected 5 fields, got 7",
            {
                "company_id": "c-1",
                "name": "Acme",
                "country": "US",
                "industry_tag": "saas",
                "last_contact_at": "",
                "(column 6)": "extra",
                "(column 7)": "more",
            },
        ),
        RejectedRow(3, "expected 5 fields, got 3", {"company_id": "c-2", "name": "Globex", "country": "JP"}),
    ]
    assert parsed.data_rows == 42
    assert len(parsed.rows) == 40


def test_blank_company_id_is_quarantined() -> None:
    data = csv_bytes(HEADER, *good_rows(10), ",No id,DE,x,", '"  ",Spaces,DE,x,', *good_rows(30, 10))
    parsed = parse(data)
    assert [(r.line, r.reason) for r in parsed.rejected] == [
        (12, "blank company_id"),
        (13, "blank company_id"),
    ]
    assert [row.company_id for row in parsed.rows] == [f"c-{i}" for i in range(40)]
    assert parsed.data_rows == 42


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "unparseable last_contact_at 'yesterday'"),
        ("20260814", "unparseable last_contact_at '20260814'"),
        ("2026-02-30", "unparseable last_contact_at '2026-02-30'"),
        ("  14/08/2026 ", "unparseable last_contact_at '14/08/2026'"),
    ],
)
def test_unparseable_last_contact_at_is_quarantined(value: str, reason: str) -> None:
    parsed = parse(csv_bytes(HEADER, *good_rows(20), f"c-bad,Bad Date,DE,x,{value}"))
    assert parsed.rejected == [
        RejectedRow(
            22,
            reason,
            {
                "company_id": "c-bad",
                "name": "Bad Date",
                "country": "DE",
                "industry_tag": "x",
                "last_contact_at": value,
            },
        )
    ]
    assert "c-bad" not in {row.company_id for row in parsed.rows}


def test_long_or_multiline_bad_values_keep_reasons_short_and_on_one_line() -> None:
    value = "not a date\n" * 50
    parsed = parse(csv_bytes(HEADER, *good_rows(20), f'c-bad,Bad,DE,x,"{value}"'))
    (rejected,) = parsed.rejected
    assert "\n" not in rejected.reason
    assert len(rejected.reason) < 150
    assert rejected.fields["last_contact_at"] == value
    assert rejected.line == 22


def test_duplicate_reasons_and_lines_point_at_where_records_start() -> None:
    data = csv_bytes(HEADER, 'c-1,"Old', 'Name",US,saas,', 'c-1,"New', 'Name",US,saas,', *good_rows(40, 100))
    parsed = parse(data)
    assert [(r.line, r.reason) for r in parsed.rejected] == [
        (2, "duplicate company_id c-1 (the later row on line 4 wins)")
    ]
    assert parsed.rejected[0].fields["name"] == "Old\nName"
    assert parsed.rows[0] == CrmRow("c-1", "New\nName", "US", "saas", None)


def test_duplicate_company_id_last_row_wins_and_earlier_rows_are_quarantined() -> None:
    data = csv_bytes(
        HEADER,
        "c-1,OLD NAME,ZZ,retail,2026-01-01",
        "c-2,Globex,JP,edu,",
        " c-1 ,Middle,US,saas,",
        "C-1,Other Company,US,saas,",  # ids are case-sensitive: not a duplicate
        "c-1,Acme,US,saas,2026-07-10",
        *good_rows(60, 100),
    )
    parsed = parse(data)
    assert parsed.rows[:3] == [
        CrmRow("c-2", "Globex", "JP", "edu", None),
        CrmRow("C-1", "Other Company", "US", "saas", None),
        CrmRow("c-1", "Acme", "US", "saas", datetime(2026, 7, 10)),
    ]
    assert parsed.rejected == [
        RejectedRow(
            2,
            "duplicate company_id c-1 (the later row on line 6 wins)",
            {
                "company_id": "c-1",
                "name": "OLD NAME",
                "country": "ZZ",
                "industry_tag": "retail",
                "last_contact_at": "2026-01-01",
            },
        ),
        RejectedRow(
            4,
            "duplicate company_id c-1 (the later row on line 6 wins)",
            {
                "company_id": " c-1 ",
                "name": "Middle",
                "country": "US",
                "industry_tag": "saas",
                "last_contact_at": "",
            },
        ),
    ]
    assert parsed.data_rows == 65
    assert len(parsed.rows) == 63


def test_only_valid_rows_compete_for_a_duplicate_id() -> None:
    data = csv_bytes(
        HEADER,
        "c-1,Bad Early,US,saas,never",
        "c-1,Valid,US,saas,2026-07-10",
        "c-1,Bad Late,US,saas,soon",
        *good_rows(60, 100),
    )
    parsed = parse(data)
    winner = [row for row in parsed.rows if row.company_id == "c-1"]
    assert winner == [CrmRow("c-1", "Valid", "US", "saas", datetime(2026, 7, 10))]
    assert [(r.line, r.reason) for r in parsed.rejected] == [
        (2, "unparseable last_contact_at 'never'"),
        (4, "unparseable last_contact_at 'soon'"),
    ]


# --------------------------------------------------------------------------- rejection threshold


def file_with_bad_rows(good: int, bad: int) -> bytes:
    return csv_bytes(HEADER, *good_rows(good), *[f",No id {i},DE,x," for i in range(bad)])


def test_exactly_five_percent_quarantined_is_accepted() -> None:
    parsed = parse(file_with_bad_rows(38, 2))
    assert (parsed.data_rows, len(parsed.rows), len(parsed.rejected)) == (40, 38, 2)
    assert MAX_REJECTED_SHARE == 0.05


def test_just_above_five_percent_quarantined_rejects_the_file_with_its_rows() -> None:
    exc = rejected_reason(file_with_bad_rows(37, 2))
    assert exc.reason == (
        "2 of 39 data rows quarantined (5.1%), above the 5% limit; first: line 39: blank company_id"
    )
    assert exc.data_rows == 39
    assert [r.line for r in exc.rejected] == [39, 40]
    assert exc.rejected[0].fields["name"] == "No id 0"


def test_duplicates_count_towards_the_threshold() -> None:
    data = csv_bytes(HEADER, "c-0,Dup,US,saas,", "c-1,Dup,US,saas,", *good_rows(37))
    exc = rejected_reason(data)
    assert exc.reason.startswith("2 of 39 data rows quarantined (5.1%)")
    assert {r.reason for r in exc.rejected} == {
        "duplicate company_id c-0 (the later row on line 4 wins)",
        "duplicate company_id c-1 (the later row on line 5 wins)",
    }


def test_every_row_quarantined_rejects_the_file() -> None:
    exc = rejected_reason(file_with_bad_rows(0, 3))
    assert exc.reason.startswith("3 of 3 data rows quarantined (100.0%)")


def test_custom_share_is_exact_at_the_limit_despite_float_rounding() -> None:
    # 0.7 * 90 == 62.99999999999999 in floats; 63 of 90 is exactly 70% and must pass.
    parsed = parse(file_with_bad_rows(27, 63), max_rejected_share=0.7)
    assert len(parsed.rejected) == 63
    exc = rejected_reason(file_with_bad_rows(26, 64), max_rejected_share=0.7)
    assert "above the 70% limit" in exc.reason


def test_zero_share_rejects_any_quarantined_row() -> None:
    assert parse(file_with_bad_rows(5, 0), max_rejected_share=0).data_rows == 5
    rejected_reason(file_with_bad_rows(5, 1), max_rejected_share=0)


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-07-10", datetime(2026, 7, 10)),
        ("2026-09-04 19:28:00", datetime(2026, 9, 4, 19, 28)),
        ("2026-09-04T19:28:00", datetime(2026, 9, 4, 19, 28)),
        ("2026-09-04t19:28", datetime(2026, 9, 4, 19, 28)),
        ("2026-09-22T16:49:00Z", datetime(2026, 9, 22, 16, 49)),
        # Issue 22: RFC 3339 allows z and t; a lowercase z quarantined the row.
        ("2026-09-22T16:49:00z", datetime(2026, 9, 22, 16, 49)),
        ("2026-09-22t16:49:00z", datetime(2026, 9, 22, 16, 49)),
        ("2026-09-22 16:49z", datetime(2026, 9, 22, 16, 49)),
        ("2026-09-22T16:49:00.250z", datetime(2026, 9, 22, 16, 49, 0, 250000)),
        ("2026-11-20t23:30:00-05:00", datetime(2026, 11, 21, 4, 30)),
        ("2026-10-01T10:28:00.000+00:00", datetime(2026, 10, 1, 10, 28)),
        ("2026-08-14T03:31:00+09:00", datetime(2026, 8, 13, 18, 31)),
        ("2026-08-14T03:31:00+0900", datetime(2026, 8, 13, 18, 31)),
        ("2026-09-04T00:54:00-05:00", datetime(2026, 9, 4, 5, 54)),
        ("2026-08-14 03:31:00.123456-0130", datetime(2026, 8, 14, 5, 1, 0, 123456)),
        ("2026-01-01T00:30:00+01:00", datetime(2025, 12, 31, 23, 30)),  # crosses the year
        ("2099-12-31T23:59:59Z", datetime(2099, 12, 31, 23, 59, 59)),  # future: not our call
        ("  2026-07-10\t", datetime(2026, 7, 10)),
    ],
)
def test_parse_timestamp_utc_accepts_iso_dates_and_date_times(text: str, expected: datetime) -> None:
    parsed = parse_timestamp_utc(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo is None


@pytest.mark.parametrize("text", ["", "   ", "\t\r\n"])
def test_parse_timestamp_utc_blank_is_never_contacted(text: str) -> None:
    assert parse_timestamp_utc(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "20260814",  # basic format: fromisoformat takes it, the contract does not
        "20260814T033100Z",
        "2026-W33-5",  # week date
        "2026-W33",
        "2026-226",  # ordinal date
        "2026-8-14",
        "2026/08/14",
        "14-08-2026",
        "2026-02-30",
        "2026-13-01",
        "2026-08-14X03:31:00",  # fromisoformat takes any separator
        "2026-08-14T25:00:00",
        "2026-08-14T03:31:00+25:00",
        "2026-08-14T03:31:00 UTC",
        "2026-08-14T03:31:00ZZ",
        "2026-08-14T03:31:00Zz",
        "2026-08-14z",  # a date alone has no time zone, in either case
        "2026-08-14Z",
        "2026-08-14T03:31:00+01:00z",
        "٢٠٢٦-٠٨-١٤",  # non-ASCII digits
        "2026-08-14T03:31:00\uff0b09:00",  # fullwidth plus sign
        "0001-01-01T00:30:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:30:00-01:00",  # after year 9999 in UTC
    ],
)
def test_parse_timestamp_utc_rejects_other_forms(text: str) -> None:
    with pytest.raises(ValueError, match="not an ISO-8601 date or date-time"):
        parse_timestamp_utc(text)


# --------------------------------------------------------------------------- snapshot date


@pytest.mark.parametrize(
    ("blob_name", "expected"),
    [
        ("companies_2026-10-01.csv", date(2026, 10, 1)),
        ("crm-drop/companies_2026-10-01.csv", date(2026, 10, 1)),
        ("crm-drop/2026-09-30/companies_2026-10-02.csv", date(2026, 10, 2)),  # folder date ignored
        ("export_2026-13-45_then_2026-10-03.csv", date(2026, 10, 3)),  # first *real* date
        ("export_2026-10-04_2026-10-05.csv", date(2026, 10, 4)),  # first one
        ("x2026-10-062026-10-07.csv", date(2026, 10, 6)),
        ("2026-02-302026-10-08.csv", date(2026, 10, 8)),  # 02-30 is no date
        ("2026-13-2026-10-09.csv", date(2026, 10, 9)),  # overlaps the false start 2026-13-20
        # Issue 22: compact and underscored dates (contract §2).
        ("CRM_Export_20261120.csv", date(2026, 11, 20)),
        ("x20261120y", date(2026, 11, 20)),
        ("2026_11_20", date(2026, 11, 20)),
        ("crm_2026_11_20.csv", date(2026, 11, 20)),
        ("CRM_Export_20261120_143000.csv", date(2026, 11, 20)),  # a time after it is no date
        ("export_20261120_2026-11-21.csv", date(2026, 11, 20)),  # the first one wins
        ("export_2026-11-21_20261120.csv", date(2026, 11, 21)),
        ("export_2026_11_22-2026-11-21.csv", date(2026, 11, 22)),
        ("export_20261131_20261130.csv", date(2026, 11, 30)),  # 11-31 is no date
        ("export_120261120_2026-11-23.csv", date(2026, 11, 23)),  # 9 digits are no date
        ("2026-11_20_20261124.csv", date(2026, 11, 24)),  # mixed separators are no date
        ("crm-drop/20261001/CRM_Export_20261120.csv", date(2026, 11, 20)),
    ],
)
def test_snapshot_date_comes_from_the_file_name(blob_name: str, expected: date) -> None:
    assert snapshot_date_from_name(blob_name, CREATED) == expected


@pytest.mark.parametrize(
    "blob_name",
    [
        "companies.csv",
        "crm-drop/2026-09-30/companies.csv",
        "companies_2026-02-30.csv",
        "123456789",  # a longer run of digits holds no date
        "export_120261120.csv",  # a 9-digit run holding 20261120
        "export_202611201.csv",
        "export_20261120123000.csv",  # a compact timestamp is no date
        "20261131",  # no calendar date
        "2026-11_20.csv",
        "crm-drop/20261120/companies.csv",  # folder date ignored
        "crm-drop/2026_11_20/companies.csv",
    ],
)
def test_snapshot_date_falls_back_to_the_utc_creation_day(blob_name: str) -> None:
    late_evening_in_rio = datetime(2026, 9, 30, 23, 30, tzinfo=timezone(timedelta(hours=-3)))
    assert snapshot_date_from_name(blob_name, late_evening_in_rio) == date(2026, 10, 1)
    early_morning_in_tokyo = datetime(2026, 10, 1, 5, 0, tzinfo=timezone(timedelta(hours=9)))
    assert snapshot_date_from_name(blob_name, early_morning_in_tokyo) == date(2026, 9, 30)
    naive_is_utc = datetime(2026, 9, 29, 23, 59)
    assert snapshot_date_from_name(blob_name, naive_is_utc) == date(2026, 9, 29)


_NON_DIGITS = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="0123456789/\x00"), max_size=8)
_FORMS = st.sampled_from(["%Y-%m-%d", "%Y_%m_%d", "%Y%m%d"])
_DAYS = st.dates(min_value=date(1000, 1, 1), max_value=date(9999, 12, 31))


@settings(max_examples=300, deadline=None)
@given(
    before=_NON_DIGITS,
    between=_NON_DIGITS,
    after=_NON_DIGITS,
    first=_DAYS,
    second=_DAYS,
    forms=st.tuples(_FORMS, _FORMS),
)
def test_the_first_date_in_the_name_wins_in_any_of_the_three_forms(
    before: str, between: str, after: str, first: date, second: date, forms: tuple[str, str]
) -> None:
    name = f"{before}{first.strftime(forms[0])}{between}{second.strftime(forms[1])}{after}.csv"
    if forms[0] == "%Y%m%d" and not between:
        # The compact first date runs into the second's digits: it is no date; 16 digits are none.
        assert date_in_name(name) == (None if forms[1] == "%Y%m%d" else second)
    else:
        assert date_in_name(name) == first


@settings(max_examples=200, deadline=None)
@given(
    before=_NON_DIGITS,
    after=_NON_DIGITS,
    day=_DAYS,
    digit=st.sampled_from("0123456789"),
    at_end=st.booleans(),
)
def test_eight_digits_inside_a_longer_run_are_no_date(
    before: str, after: str, day: date, digit: str, at_end: bool
) -> None:
    compact = day.strftime("%Y%m%d")
    run = compact + digit if at_end else digit + compact
    assert date_in_name(f"{before}{run}{after}.csv") is None


@pytest.mark.parametrize(
    ("blob_name", "expected"),
    [
        (
            "crm-drop/companies.csv",
            "no date in the file name; staged as the snapshot of 2026-10-01 (the UTC day it was uploaded);"
            " name the file after the day it describes, as YYYY-MM-DD, YYYY_MM_DD or YYYYMMDD"
            " (e.g. companies_2026-10-01.csv)",
        ),
        (
            "CRM_Export_20261131.csv",
            "no calendar date in the file name (20261131 is not one); staged as the snapshot of 2026-10-01",
        ),
        (
            "crm_2026_13_01.csv",
            "no calendar date in the file name (2026_13_01 is not one); staged as the snapshot of 2026-10-01",
        ),
    ],
)
def test_an_undated_file_says_which_day_it_became_and_how_to_name_it(blob_name: str, expected: str) -> None:
    parsed = parse(csv_bytes(HEADER, "c-1,Acme,US,saas,"), blob_name=blob_name)
    assert parsed.snapshot_date == CREATED.date()
    assert len(parsed.warnings) == 1 and parsed.warnings[0].startswith(expected), parsed.warnings
    assert "YYYY-MM-DD, YYYY_MM_DD or YYYYMMDD" in parsed.warnings[0]


def test_a_dated_file_has_no_date_warning() -> None:
    assert parse(csv_bytes(HEADER, "c-1,Acme,US,saas,"), blob_name="CRM_Export_20261120.csv").warnings == []


def test_parse_uses_the_snapshot_date_rule() -> None:
    data = csv_bytes(HEADER, "c-1,Acme,US,saas,")
    assert parse(data, blob_name="crm-drop/companies_2026-10-07.csv").snapshot_date == date(2026, 10, 7)
    assert parse(data, blob_name="crm-drop/companies.csv").snapshot_date == CREATED.date()


def test_rejection_is_a_value_error() -> None:
    exc = CrmFileRejected("no data rows", data_rows=0)
    assert isinstance(exc, ValueError)
    assert str(exc) == "no data rows"
    assert exc.rejected == []


# --------------------------------------------------------------------------- golden files

GOLDEN_COUNTS = {
    # file: (data rows, staged rows, quarantined rows, warnings)
    "companies_2026-10-01.csv": (41, 41, 0, []),
    "companies_2026-10-02.csv": (44, 42, 2, []),
    "companies_2026-10-03.csv": (45, 43, 2, ["ignored extra columns: account_owner"]),
    "companies_2026-10-04.csv": (44, 43, 1, []),
    "companies_2026-10-06.csv": (44, 44, 0, []),
    "companies_2026-10-07.csv": (46, 44, 2, []),
    "companies_2026-10-08.csv": (46, 44, 2, ["ignored extra columns: account_owner"]),
    "companies_2026-10-10.csv": (46, 45, 1, []),
}


def parse_golden(file_name: str) -> ParsedSnapshot:
    path = GOLDEN.root / "crm" / file_name
    return parse_crm_snapshot(path.read_bytes(), f"crm-drop/{file_name}", CREATED)


def test_every_golden_file_is_covered() -> None:
    assert sorted(p.name for p in (GOLDEN.root / "crm").glob("*.csv")) == sorted(GOLDEN_COUNTS)


@pytest.mark.parametrize("file_name", sorted(GOLDEN_COUNTS))
def test_golden_file_parses_with_expected_counts(file_name: str) -> None:
    parsed = parse_golden(file_name)
    data_rows, staged, quarantined, warnings = GOLDEN_COUNTS[file_name]
    assert (parsed.data_rows, len(parsed.rows), len(parsed.rejected)) == (data_rows, staged, quarantined)
    assert parsed.warnings == warnings
    assert parsed.snapshot_date == date.fromisoformat(
        file_name.removeprefix("companies_").removesuffix(".csv")
    )
    assert len({row.company_id for row in parsed.rows}) == staged
    assert "OLD NAME" not in {row.company_name for row in parsed.rows}


def test_golden_specific_rows() -> None:
    first = {row.company_id: row for row in parse_golden("companies_2026-10-01.csv").rows}
    assert first["c-010002"] == CrmRow(
        "c-010002", "Stark\nIndustries 2", "JP", "fintech", datetime(2026, 8, 13, 18, 31)
    )
    assert first["c-010041"].company_name == "Umbrella, Inc. 41"
    assert first["c-010012"].company_name == 'The "Best" Co 12'
    assert first["c-010024"].company_name == "Müller GmbH 24"

    bom_crlf = parse_golden("companies_2026-10-02.csv")
    assert [(r.line, r.reason) for r in bom_crlf.rejected] == [
        (3, "duplicate company_id c-010023 (the later row on line 11 wins)"),
        (6, "blank company_id"),
    ]
    assert {row.company_id: row for row in bom_crlf.rows}["c-010023"].company_name == "Zoë & Co 23"

    renamed = parse_golden("companies_2026-10-03.csv")
    assert renamed.rejected[0].fields["company_name"] == "OLD NAME"
    assert set(renamed.rejected[0].fields) == {
        "Last_Contact_At",
        "industry_tag",
        "COMPANY_ID",
        "country",
        "company_name",
        "account_owner",
    }

    upper = parse_golden("companies_2026-10-04.csv")
    assert [(r.line, r.reason) for r in upper.rejected] == [(9, "unparseable last_contact_at 'yesterday'")]


def test_golden_rows_match_the_expected_analytics_table() -> None:
    """Every CRM value in the expected table comes from the snapshot we parse."""
    snapshots = {}
    for file_name in GOLDEN_COUNTS:
        parsed = parse_golden(file_name)
        snapshots[parsed.snapshot_date.isoformat()] = {row.company_id: row for row in parsed.rows}
    with (GOLDEN.expected_csv).open(newline="", encoding="utf-8") as fh:
        expected = list(csv.DictReader(fh))
    assert expected

    seen: dict[str, set[str]] = {day: set() for day in snapshots}
    for want in expected:
        snapshot = snapshots[want["crm_snapshot_date"]]
        row = snapshot.get(want["company_id"])
        crm = (want["company_name"], want["country"], want["industry_tag"], want["last_contact_at"])
        if row is None:
            assert crm == ("", "", "", ""), want  # usage-only company: NULL CRM columns
            continue
        seen[want["crm_snapshot_date"]].add(row.company_id)
        got = (
            row.company_name or "",
            row.country or "",
            row.industry_tag or "",
            row.last_contact_at.strftime("%Y-%m-%d %H:%M:%S") if row.last_contact_at else "",
        )
        assert got == crm, want
    # Each snapshot is effective for some day, so all of its companies appear.
    assert {day: len(ids) for day, ids in seen.items()} == {day: len(rows) for day, rows in snapshots.items()}


# --------------------------------------------------------------------------- property

_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_characters="\x00"),
        st.sampled_from([",", '"', "\n", "\r", " ", "\u2028", "\x85"]),
    ),
    max_size=15,
)
_OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timedelta(minutes=m))


@st.composite
def _timestamps(draw: st.DrawFn) -> tuple[str, datetime | None]:
    """(text as a CRM export might write it, the naive UTC value it means)."""
    style = draw(st.sampled_from(["empty", "date", "naive", "Z", "colon", "compact"]))
    if style == "empty":
        return "", None
    if style == "date":
        day = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1)))
        return day.isoformat(), datetime(day.year, day.month, day.day)
    utc = draw(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2099, 12, 30)))
    sep = draw(st.sampled_from(["T", "t", " "]))
    if style == "naive":
        return utc.isoformat(sep=sep), utc
    if style == "Z":
        return utc.isoformat(sep=sep) + draw(st.sampled_from(["Z", "z"])), utc
    offset = draw(_OFFSETS)
    text = (utc + offset).replace(tzinfo=timezone(offset)).isoformat(sep=sep)
    if style == "compact":
        text = text[:-3] + text[-2:]  # +hh:mm -> +hhmm
    return text, utc


@st.composite
def _rows(draw: st.DrawFn) -> list[tuple[list[str], CrmRow]]:
    ids = draw(
        st.lists(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-_ ", min_size=1, max_size=10).filter(
                lambda s: s.strip()
            ),
            min_size=1,
            max_size=25,
            unique_by=str.strip,
        )
    )
    out = []
    for company_id in ids:
        name, country, tag = draw(_TEXT), draw(_TEXT), draw(_TEXT)
        ts_text, ts = draw(_timestamps())
        expected = CrmRow(
            company_id.strip(), name.strip() or None, country.strip() or None, tag.strip() or None, ts
        )
        out.append(([company_id, name, country, tag, ts_text], expected))
    return out


@settings(max_examples=200, deadline=None)
@given(rows=_rows(), newline=st.sampled_from(["\r\n", "\n"]), bom=st.booleans())
def test_round_trip_of_csv_writer_output(
    rows: list[tuple[list[str], CrmRow]], newline: str, bom: bool
) -> None:
    buffer = io.StringIO(newline="")
    # 3.11's writer only quotes \r when it is part of the line terminator, which would
    # make a lone \r in a name unreadable by anyone; with "\n", quote everything.
    quoting = csv.QUOTE_MINIMAL if newline == "\r\n" else csv.QUOTE_ALL
    writer = csv.writer(buffer, lineterminator=newline, quoting=quoting)
    writer.writerow(HEADER.split(","))
    writer.writerows(fields for fields, _ in rows)
    data = (BOM if bom else b"") + buffer.getvalue().encode("utf-8")

    parsed = parse(data)

    assert parsed.rows == [expected for _, expected in rows]
    assert parsed.rejected == []
    assert parsed.data_rows == len(rows)


def test_a_company_id_too_long_for_the_warehouse_is_quarantined() -> None:
    rows = "\n".join(f"c-{i},Acme,DE,saas," for i in range(30))
    data = (
        f"company_id,name,country,industry_tag,last_contact_at\n{'x' * 65},Long,DE,saas,\n{rows}\n".encode()
    )
    parsed = parse_crm_snapshot(data, "companies_2026-10-01.csv", datetime(2026, 10, 1, tzinfo=UTC))
    assert [r.reason for r in parsed.rejected] == ["company_id longer than 64 characters"]
    assert len(parsed.rows) == 30


# --------------------------------------------------------------------------- read in chunks


def _split(data: bytes, cuts: list[int]) -> Callable[[], Iterator[bytes]]:
    """The file as a blob store hands it over: pieces cut anywhere (inside a character, between
    \\r and \\n, inside a quoted field)."""
    points = sorted({min(c, len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(edges) if b > a]
    return lambda: iter(pieces)


def _read(chunks: Callable[[], Iterator[bytes]]) -> tuple[Any, ...]:
    """What the loader takes from a reader: rows, losers, quarantine, warnings (or the rejection)."""
    reader = CrmReader(chunks, NAME, CREATED)
    try:
        found = list(reader.valid_rows())
        fingerprints = [hash(row[0]) for _, row in found]
        losers = reader.duplicate_losers(fingerprints, [line for line, _ in found])
        rejected, warnings = reader.finish(losers)
    except CrmFileRejected as exc:
        return ("rejected", exc.reason)
    lost = {r.line for r in losers}
    return ([row for line, row in found if line not in lost], rejected, warnings, reader.data_rows)


_CHUNKED_FILES = [
    csv_bytes(HEADER, *good_rows(40), "c-3,Again,FR,saas,2026-01-01", newline="\r\n", bom=True),
    csv_bytes(
        HEADER, 'c-1,"Zoë ""Q"", Ltd.\nsecond line",DE,saas,2026-09-01T10:00:00+02:00', *good_rows(30, 2)
    ),
    csv_bytes(HEADER, *good_rows(30), "c-9,bad date,US,saas,yesterday", "c-10,Ünïcødé 😀,JP,edu,"),
    csv_bytes(HEADER, *good_rows(30)) + b"c-99,\xc3\x28broken,US,saas,\n",  # invalid UTF-8 late
    csv_bytes(HEADER, *good_rows(30)) + b'c-77,"never closed,US,saas,\n',
]


@settings(max_examples=150, deadline=None)
@given(
    which=st.integers(min_value=0, max_value=len(_CHUNKED_FILES) - 1),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_a_file_read_in_any_pieces_reads_as_the_whole_file(which: int, cuts: list[int]) -> None:
    data = _CHUNKED_FILES[which]
    assert _read(_split(data, cuts)) == _read(lambda: iter([data]))


def test_the_whole_file_result_is_what_parse_crm_snapshot_gives() -> None:
    for data in _CHUNKED_FILES:
        whole = _read(lambda data=data: iter([data]))
        try:
            parsed = parse(data)
        except CrmFileRejected as exc:
            assert whole == ("rejected", exc.reason)
        else:
            assert whole == (parsed.rows, parsed.rejected, parsed.warnings, parsed.data_rows)


def test_a_fingerprint_shared_by_two_ids_is_no_duplicate() -> None:
    data = csv_bytes(HEADER, *good_rows(4))
    reader = CrmReader(lambda: iter([data]), NAME, CREATED)
    found = list(reader.valid_rows())
    assert reader.duplicate_losers([7, 7, 7, 8], [line for line, _ in found]) == []
