"""Bad and awkward CRM files through the real CLI (contract section 2).

Every case first stages a known-good snapshot for the same snapshot date, then drops the
file from ``tests/data/crm_bad/`` (or one generated here, for the big ones) and checks the
outcome the contract promises: a loaded file replaces that snapshot and accounts for every
data row as staged or quarantined; a rejected file is quarantined byte for byte with a
reason, raises an alert, fails the command with one line on stderr, and leaves the
previously staged snapshot alone.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.ledger_sqlite import SqliteLedger
from shared.domain.crm_csv import FIELD_SIZE_LIMIT
from shared.domain.names import file_key
from tests.support import REPO, read_alerts, read_table

CORPUS = REPO / "tests" / "data" / "crm_bad"
HEADER = "company_id,name,country,industry_tag,last_contact_at"
COUNTRIES = ("DE", "US", "FR")
TAGS = ("saas", "retail", "media")
MIB = 1024 * 1024

Values = tuple[str | None, str | None, str | None, datetime | None]  # name, country, tag, last contact


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def numbered(i: int, name: str | None = None, last_contact: datetime | None = None) -> Values:
    """What the corpus generator wrote for company c-<i:03d> (see tests/data/crm_bad/README.md)."""
    return (
        name or f"Company {i}",
        COUNTRIES[i % 3],
        TAGS[i % 3],
        last_contact or datetime(2026, 9, i % 28 + 1),
    )


def numbered_ids(
    first: int, last: int, *, without: tuple[int, ...] = (), **overrides: Values
) -> dict[str, Values]:
    """Companies c-<first>..c-<last> as generated, minus ``without``, with ``c_<nnn>=`` overrides."""
    rows = {f"c-{i:03d}": numbered(i) for i in range(first, last + 1) if i not in without}
    rows.update({key.replace("_", "-"): value for key, value in overrides.items()})
    return rows


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Loaded:
    rows: dict[str, Values]  # company_id -> expected staged values
    quarantined: list[str] = field(default_factory=list)  # reason phrases, in file order


@dataclass(frozen=True)
class Rejected:
    phrase: str  # must appear in stderr, reason.json, the ledger and the alert
    data_rows: int = 0  # as far as the parser got
    quarantined: int = 0  # rows listed in reason.json


@dataclass(frozen=True)
class Case:
    file: str  # corpus file, or the name of a generated one
    outcome: Loaded | Rejected
    make: Callable[[], bytes] | None = None  # generate instead of reading the corpus
    folder: str = "corpus"  # the blob name is <folder>/<file>

    def data(self) -> bytes:
        return self.make() if self.make else (CORPUS / self.file).read_bytes()

    @property
    def blob_name(self) -> str:
        return f"{self.folder}/{self.file}"


def one_row_with_name(name: str) -> bytes:
    return f'{HEADER}\nc-001,"{name}",DE,saas,2026-09-01\nc-002,Small Co,US,retail,\n'.encode()


def huge_name() -> bytes:
    return one_row_with_name("N" * MIB)


def name_over_duckdb_line_limit() -> bytes:
    return one_row_with_name("N" * 3 * MIB)


def field_over_csv_limit() -> bytes:
    return one_row_with_name("N" * (FIELD_SIZE_LIMIT + 1))


SMALL_CO = ("Small Co", "US", "retail", None)
EMOJI = "\U0001f600"  # one character, two UTF-16 code units


def text_limits() -> bytes:
    """100 good rows and six at or over the NVARCHAR limits, counted in UTF-16 code units."""
    good = [
        f"c-{i:03d},Company {i},{COUNTRIES[i % 3]},{TAGS[i % 3]},2026-09-{i % 28 + 1:02d}"
        for i in range(1, 101)
    ]
    edge = [
        f"c-101,{'N' * 400},DE,saas,",  # at the limit: staged
        f"c-102,{'N' * 401},DE,saas,",  # over: quarantined
        f"{EMOJI * 32},Emoji Co,DE,saas,",  # a 64-unit id: staged
        f"{EMOJI * 33},Emoji Co,DE,saas,",  # 33 characters, 66 units: quarantined
        f"c-105,{EMOJI * 200},DE,saas,",  # 400 units: staged
        f"c-106,{EMOJI * 201},DE,saas,",  # 201 characters, 402 units: quarantined
    ]
    return "\n".join([HEADER, *good, *edge, ""]).encode()


def lowercase_z_and_t() -> bytes:
    """Issue 22 case 6: RFC 3339 allows z and t; a lowercase z quarantined the row."""
    return "\n".join(
        [
            HEADER,
            "c-001,Lower Z,DE,saas,2026-09-01T08:00:00z",
            "c-002,Lower T,US,retail,2026-09-02t09:30:00Z",
            "c-003,Both,FR,media,2026-09-03t23:30z",
            "c-004,Space,DE,saas,2026-09-04 10:15:00.5z",
            "c-005,Offset,US,retail,2026-09-05t23:30:00-05:00",
            "",
        ]
    ).encode()


def windows_1252() -> bytes:
    """Contract §2: a Windows-1252 export (Excel's "CSV (Comma delimited)"), "Zoë" on line 3."""
    return "\n".join(
        [
            HEADER,
            "c-001,Acme,DE,saas,2026-09-01",
            "c-002,Zoë & Co,SE,edu,2026-09-04",
            "c-003,Globex,US,retail,",
            "",
        ]
    ).encode("cp1252")


CASES = [
    # ---- rejected: nothing staged, the previous snapshot stays
    Case("not_utf8_2026-10-01.csv", Rejected("not valid UTF-8")),
    Case("empty_2026-10-02.csv", Rejected("empty file")),
    Case("header_only_2026-10-03.csv", Rejected("no data rows")),
    Case("missing_column_2026-10-04.csv", Rejected("missing required column(s): last_contact_at")),
    Case("binary_garbage_2026-10-05.csv", Rejected("NUL bytes")),
    Case(
        "too_many_blank_ids_2026-10-06.csv",
        Rejected("2 of 20 data rows quarantined (10.0%)", data_rows=20, quarantined=2),
    ),
    Case("unterminated_quote_2026-10-07.csv", Rejected("unterminated quoted field", data_rows=2)),
    Case("duplicate_column_2026-10-13.csv", Rejected("duplicate column(s) in header: country")),
    Case("semicolon_2026-10-14.csv", Rejected("missing required column(s): company_id")),
    Case("field_over_limit_2026-10-12.csv", Rejected("larger than the 16 MiB limit"), field_over_csv_limit),
    Case(
        "windows_1252_2026-10-24.csv",
        Rejected(
            "not valid UTF-8 on line 3 (byte 0xEB at offset 91: invalid continuation byte);"
            " save the file as UTF-8 (in Excel: Save As, CSV UTF-8)"
        ),
        windows_1252,
    ),
    # ---- loaded: the snapshot for the date is replaced, bad rows quarantined
    Case(
        "duplicate_ids_2026-10-08.csv",
        Loaded(
            # c-005 three times: the last wins; c-007's last copy has a bad date, so the
            # earlier valid c-007 wins (docs/architecture.md: the last *valid* row wins).
            numbered_ids(1, 57, c_005=numbered(5, "Five (final copy)", ts("2026-09-30"))),
            ["duplicate company_id c-005", "duplicate company_id c-005", "unparseable last_contact_at"],
        ),
    ),
    Case(
        "bad_dates_2026-10-09.csv",
        Loaded(
            numbered_ids(
                1,
                40,
                without=(3, 30),  # the two unparseable dates
                c_010=numbered(10, last_contact=ts("2026-09-10T06:30:00")),  # +02:00 -> UTC
                c_011=numbered(11, last_contact=ts("2026-09-11T23:15:00")),  # Z
                c_012=numbered(12, last_contact=ts("2026-09-12T07:00:00")),  # space, no offset
                c_013=(*numbered(13)[:3], None),  # empty: never contacted
            ),
            ["unparseable last_contact_at '10/01/2026'", "unparseable last_contact_at '2026-02-30'"],
        ),
    ),
    Case(
        "lowercase_z_2026-10-23.csv",
        Loaded(
            {
                "c-001": ("Lower Z", "DE", "saas", ts("2026-09-01T08:00:00")),
                "c-002": ("Lower T", "US", "retail", ts("2026-09-02T09:30:00")),
                "c-003": ("Both", "FR", "media", ts("2026-09-03T23:30:00")),
                "c-004": ("Space", "DE", "saas", ts("2026-09-04T10:15:00.5")),
                "c-005": ("Offset", "US", "retail", ts("2026-09-06T04:30:00")),
            }
        ),
        lowercase_z_and_t,
    ),
    Case(
        "future_dates_2026-10-10.csv",
        Loaded(
            {
                "c-001": ("Tomorrow Inc", "DE", "saas", ts("2026-10-11")),
                "c-002": ("Far Future Ltd", "US", "retail", ts("2099-12-31T23:59:59")),
                "c-003": ("Past Co", "FR", "media", ts("2026-09-30T12:00:00")),
            }
        ),
    ),
    Case(
        "huge_name_2026-10-11.csv",
        Rejected("name longer than 400 characters", data_rows=2, quarantined=1),  # 1 of 2 rows: > 5%
        huge_name,
    ),
    Case(
        "bom_crlf_quoted_2026-10-15.csv",
        Loaded(
            {
                "c-001": ("Umbrella, Inc.", "DE", "saas", ts("2026-09-01T08:00:00")),
                "c-002": ('The "Best" Co', "US", "retail", ts("2026-09-02")),
                "c-003": ("Two\nLines GmbH", "FR", "media", None),
                "c-004": ("Zoë & Co", "SE", "edu", ts("2026-09-04T09:30:00")),
            }
        ),
    ),
    Case(
        "blank_lines_whitespace_2026-10-17.csv",
        Loaded(
            {
                "c-001": ("Acme", "DE", "saas", ts("2026-09-01")),
                "c-002": ("Globex", "US", "retail", ts("2026-09-02T10:00:00")),
                "c-003": ("Initech", "FR", "media", None),
            }
        ),
    ),
    # CR-only line endings are not in the contract (\n or \r\n), but the parser reads them
    # (csv on a newline="" stream splits records on a lone CR too), so such a file loads.
    Case(
        "cr_only_2026-10-18.csv",
        Loaded(
            {
                "c-001": numbered(1),
                "c-002": ("Quoted, Name", "US", "retail", ts("2026-09-02")),
                "c-003": numbered(3),
            }
        ),
    ),
    Case(
        "no_date_in_name.csv",
        Loaded(
            {
                "c-001": ("Undated One", "DE", "saas", ts("2026-09-01")),
                "c-002": ("Undated Two", "US", "retail", None),
            }
        ),
        folder="2001-01-01",  # a date in a folder is not the snapshot date
    ),
]

# Cases that once failed in staging (CR inside quotes, fields over DuckDB's default line size,
# a literal \\N) and now load.
REGRESSIONS = [
    pytest.param(
        Case(
            "crlf_in_quoted_field_2026-10-16.csv",
            Loaded({"c-001": ("Two\r\nLines AG", "DE", "saas", ts("2026-09-01")), "c-002": numbered(2)}),
        ),
        id="crlf_in_quoted_field",
    ),
    pytest.param(
        Case(
            "cr_only_quoted_newline_2026-10-21.csv",
            Loaded({"c-001": numbered(1), "c-002": ("Two\rLines AG", "US", "retail", ts("2026-09-02"))}),
        ),
        id="cr_only_quoted_newline",
    ),
    pytest.param(
        Case(
            "name_3mib_2026-10-19.csv",
            Rejected("name longer than 400 characters", data_rows=2, quarantined=1),
            name_over_duckdb_line_limit,
        ),
        id="name_3mib",
    ),
    pytest.param(
        Case(
            "text_limits_2026-10-22.csv",
            Loaded(
                {
                    **numbered_ids(1, 100),
                    "c-101": ("N" * 400, "DE", "saas", None),
                    EMOJI * 32: ("Emoji Co", "DE", "saas", None),
                    "c-105": (EMOJI * 200, "DE", "saas", None),
                },
                quarantined=[
                    "name longer than 400 characters",
                    "company_id longer than 64 UTF-16 code units",
                    "name longer than 400 UTF-16 code units",
                ],
            ),
            text_limits,
        ),
        id="text_limits",
    ),
    pytest.param(
        Case(
            "backslash_n_name_2026-10-20.csv",
            Loaded({"c-001": ("\\N", "DE", "saas", ts("2026-09-01")), "c-002": numbered(2)}),
        ),
        id="backslash_n_name",
    ),
]


PARAMS = [pytest.param(c, id=Path(c.file).stem) for c in CASES] + REGRESSIONS


# --------------------------------------------------------------------------- helpers


def date_in_file_name(blob_name: str) -> date | None:
    found = re.search(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", blob_name.rsplit("/", 1)[-1])
    return date.fromisoformat(found.group(0)) if found else None


def snapshot_rows(data_dir: Path, day: date) -> list[dict[str, Any]]:
    return read_table(
        data_dir,
        "SELECT * FROM stg.crm_company_snapshot"  # noqa: S608 - a date from the test itself
        f" WHERE snapshot_date = DATE '{day.isoformat()}' ORDER BY company_id",
    )


def snapshot_state(data_dir: Path, day: date) -> list[dict[str, Any]]:
    return read_table(
        data_dir,
        f"SELECT * FROM stg.crm_snapshot WHERE snapshot_date = DATE '{day.isoformat()}'",  # noqa: S608
    )


def file_entry(data_dir: Path, blob_name: str) -> dict[str, Any]:
    entry = SqliteLedger(data_dir / "ledger.sqlite3").get("files", file_key(blob_name))
    assert entry is not None, f"no ledger entry for {blob_name}"
    return dict(entry.data)


def quarantine_dir(data_dir: Path, blob_name: str, data: bytes) -> Path:
    run_id = "crm-" + hashlib.sha256(data).hexdigest()[:12]
    return data_dir / "blobs" / "quarantine" / "crm-drop" / Path(*blob_name.split("/")) / run_id


def count_data_rows(data: bytes) -> int:
    """Data records counted with the csv module alone: records after the header, minus blank lines."""
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    return sum(1 for record in reader if len(record) > 1 or (record and record[0].strip())) - 1


def drop_baseline(cli, tmp_path: Path, day: date) -> str:
    """Stage a known-good snapshot for ``day``; returns its blob name."""
    name = f"0-baseline_{day.isoformat()}.csv"
    path = tmp_path / name
    path.write_text(
        f"{HEADER}\nbase-1,Baseline One,DE,saas,2026-08-01\nbase-2,Baseline Two,US,retail,\n"
        "base-3,Baseline Three,FR,media,2026-08-03T12:00:00Z\n"
    )
    code, out, err = cli("crm-drop", str(path), "--name", name)
    assert code == 0, out + err
    return name


def as_values(row: dict[str, Any]) -> Values:
    return (row["company_name"], row["country"], row["industry_tag"], row["last_contact_at"])


# --------------------------------------------------------------------------- the corpus


def test_every_corpus_file_has_a_case() -> None:
    covered = {Path(c.file).name for c in CASES} | {p.values[0].file for p in REGRESSIONS}
    on_disk = {p.name for p in CORPUS.glob("*.csv")}
    assert on_disk <= covered, f"corpus files without a case: {sorted(on_disk - covered)}"


@pytest.mark.parametrize("case", PARAMS)
def test_bad_crm_file(case: Case, cli, local_env: Path, tmp_path: Path, utc_today: date) -> None:
    data = case.data()
    name = case.blob_name
    # An undated name takes the day the blob is created (UTC): today, checked below.
    day = date_in_file_name(name) or utc_today
    baseline = drop_baseline(cli, tmp_path, day)
    before = snapshot_rows(local_env, day)
    before_state = snapshot_state(local_env, day)
    assert {r["company_id"] for r in before} == {"base-1", "base-2", "base-3"}

    path = tmp_path / "upload" / Path(case.file).name
    path.parent.mkdir()
    path.write_bytes(data)
    code, out, err = cli("crm-drop", str(path), "--name", name)

    assert "Traceback" not in out + err
    blob = local_env / "blobs" / "crm-drop" / Path(*name.split("/"))
    assert blob.read_bytes() == data
    if date_in_file_name(name) is None:
        assert datetime.fromtimestamp(blob.stat().st_mtime, UTC).date() == day
    qdir = quarantine_dir(local_env, name, data)

    if isinstance(case.outcome, Rejected):
        expect = case.outcome
        assert code == 1, out + err
        entry = file_entry(local_env, name)
        assert err.endswith("\n") and err.count("\n") == 1, err
        assert expect.phrase in err and name in err
        assert "rejected" in out
        # The original bytes, under a path that keeps the blob name, with the reason.
        assert (qdir / Path(case.file).name).read_bytes() == data
        reason = json.loads((qdir / "reason.json").read_text())
        assert reason["blob"] == name and expect.phrase in reason["reason"]
        assert len(reason["rejected_rows"]) == expect.quarantined
        assert not (qdir / "rejected-rows.jsonl").exists()
        assert entry["status"] == "rejected" and expect.phrase in entry["reason"]
        assert (entry["data_rows"], entry["quarantined"]) == (expect.data_rows, expect.quarantined)
        alerts = [a for a in read_alerts(local_env) if a["kind"] == "crm_file_rejected"]
        assert len(alerts) == 1 and alerts[0]["severity"] == "error"
        assert name in alerts[0]["message"] and expect.phrase in alerts[0]["message"]
        # The snapshot staged before is untouched: same rows, same source blob, same state.
        assert snapshot_rows(local_env, day) == before
        assert {r["source_blob"] for r in before} == {baseline}
        assert snapshot_state(local_env, day) == before_state
        return

    expect = case.outcome
    assert code == 0, out + err
    assert err == ""
    assert f"snapshot {day.isoformat()} staged" in out
    entry = file_entry(local_env, name)
    rows = snapshot_rows(local_env, day)
    assert {r["company_id"]: as_values(r) for r in rows} == expect.rows
    assert {r["source_blob"] for r in rows} == {name}
    rejected_file = qdir / "rejected-rows.jsonl"
    quarantined = (
        [json.loads(line) for line in rejected_file.read_text().splitlines()]
        if rejected_file.exists()
        else []
    )
    assert len(quarantined) == len(expect.quarantined)
    for record, phrase in zip(quarantined, expect.quarantined, strict=True):
        assert phrase in record["reason"], (record, phrase)
    # Every data row is accounted for, counted independently of the parser.
    data_rows = count_data_rows(data)
    assert entry["status"] == "staged" and entry["snapshot_date"] == day.isoformat()
    assert entry["data_rows"] == data_rows
    assert entry["staged"] + entry["quarantined"] == data_rows
    assert (entry["staged"], entry["quarantined"]) == (len(rows), len(quarantined))
    assert not [a for a in read_alerts(local_env) if a["kind"] == "crm_file_rejected"]
    # It replaced the baseline, staged for the same day under another name: a warning names both.
    replaced = f"{name} replaces the snapshot of {day} staged from {baseline}"
    assert replaced in out and replaced in entry["warnings"]
    assert [a["severity"] for a in read_alerts(local_env) if replaced in a["message"]] == ["warning"]


# --------------------------------------------------------------------------- the real process


def test_rejected_file_gives_one_stderr_line_from_a_real_process(local_env: Path) -> None:
    path = CORPUS / "missing_column_2026-10-04.csv"
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "crm-drop", str(path)],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "missing required column" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


# --------------------------------------------------------------------------- a million rows


@pytest.mark.slow
def test_a_million_row_file_loads_and_accounts_for_every_row(cli, local_env: Path, tmp_path: Path) -> None:
    total = 1_000_000
    path = tmp_path / "companies_2026-10-20.csv"
    blank_ids = bad_dates = duplicates = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER.split(","))
        for i in range(total):
            company_id = f"c-{i:07d}"
            last_contact = f"2026-09-{i % 28 + 1:02d}T{i % 24:02d}:00:00Z"
            if i % 5000 == 1:
                company_id, blank_ids = "", blank_ids + 1
            if i % 4000 == 2:
                last_contact, bad_dates = "soon", bad_dates + 1
            if i % 10000 == 7:  # repeats the (valid) row before: that one loses
                company_id, duplicates = f"c-{i - 1:07d}", duplicates + 1
            writer.writerow([company_id, f"Company {i}", COUNTRIES[i % 3], TAGS[i % 3], last_contact])
    expected_quarantined = blank_ids + bad_dates + duplicates
    assert expected_quarantined == 550 and expected_quarantined / total < 0.05
    data = path.read_bytes()
    assert count_data_rows(data) == total

    started = time.perf_counter()
    code, out, err = cli("crm-drop", str(path))
    elapsed = time.perf_counter() - started
    print(f"\n1,000,000-row crm-drop took {elapsed:.1f} s")

    assert code == 0, out + err
    entry = file_entry(local_env, path.name)
    assert entry["data_rows"] == total
    assert entry["staged"] + entry["quarantined"] == total
    assert entry["quarantined"] == expected_quarantined
    counted = read_table(
        local_env,
        "SELECT COUNT(*) AS n, COUNT(DISTINCT source_blob) AS blobs FROM stg.crm_company_snapshot"
        " WHERE snapshot_date = DATE '2026-10-20'",
    )
    assert counted == [{"n": total - expected_quarantined, "blobs": 1}]
    rejected = quarantine_dir(local_env, path.name, data) / "rejected-rows.jsonl"
    reasons = [json.loads(line)["reason"] for line in rejected.read_text().splitlines()]
    assert len(reasons) == expected_quarantined
    assert sum(r == "blank company_id" for r in reasons) == blank_ids
    assert sum(r.startswith("unparseable last_contact_at") for r in reasons) == bad_dates
    assert sum(r.startswith("duplicate company_id") for r in reasons) == duplicates
