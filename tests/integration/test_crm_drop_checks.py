"""CRM drops a user gets wrong, through the real CLI (issue 11): each one said in one line,
nothing from a rejected file staged, the snapshot before it left alone."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from tests.support import read_alerts

HEADER = "company_id,name,country,industry_tag,last_contact_at"


def companies_csv(count: int, *, delimiter: str = ",", extra_rows: str = "") -> bytes:
    rows = [HEADER.replace(",", delimiter)]
    rows += [delimiter.join([f"c-{i:04d}", f"Company {i}", "DE", "saas", "2026-09-01"]) for i in range(count)]
    return ("\n".join(rows) + "\n" + extra_rows).encode()


def drop(cli, tmp_path: Path, name: str, data: bytes, *args: str) -> tuple[int, str, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return cli("crm-drop", str(path), *args)


def staged_companies(data_dir: Path, snapshot: str) -> int:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute(
            "SELECT COUNT(*) FROM stg.crm_company_snapshot WHERE snapshot_date = CAST(? AS DATE)", [snapshot]
        ).fetchone()
    return int(row[0]) if row else 0


def quarantined(data_dir: Path) -> list[str]:
    base = data_dir / "blobs" / "quarantine"
    return (
        sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
        if base.exists()
        else []
    )


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_file_without_a_date_is_staged_as_the_upload_day_and_says_so(
    cli, local_env: Path, tmp_path: Path, utc_today: date
) -> None:
    # Before: it silently became today's snapshot.
    today = utc_today.isoformat()
    code, out, err = drop(cli, tmp_path, "companies.csv", companies_csv(5))
    assert code == 0, err
    warning = (
        f"no date in the file name; staged as the snapshot of {today} (the UTC day it was uploaded);"
        f" name the file after the day it describes, as YYYY-MM-DD, YYYY_MM_DD or YYYYMMDD"
        f" (e.g. companies_{today}.csv)"
    )
    assert warning in out
    assert staged_companies(local_env, today) == 5
    alerts = [a for a in read_alerts(local_env) if a["kind"] == "crm_file_warning"]
    assert [a["severity"] for a in alerts] == ["warning"] and warning in alerts[0]["message"]


def test_a_date_that_is_no_calendar_date_is_named_in_the_warning(
    cli, local_env: Path, tmp_path: Path, utc_today: date
) -> None:
    today = utc_today.isoformat()
    code, out, err = drop(cli, tmp_path, "companies_2026-13-45.csv", companies_csv(5))
    assert code == 0, err
    assert (
        f"no calendar date in the file name (2026-13-45 is not one); staged as the snapshot of {today}" in out
    )


def source_blobs(data_dir: Path, snapshot: str) -> set[str]:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT DISTINCT source_blob FROM stg.crm_company_snapshot WHERE snapshot_date = CAST(? AS DATE)",
            [snapshot],
        ).fetchall()
    return {row[0] for row in rows}


def test_a_backlog_of_exports_with_compact_dates_stages_one_snapshot_each(
    cli, local_env: Path, tmp_path: Path
) -> None:
    # Issue 22 case 4. Before: "no date in the file name", all three staged as today's
    # snapshot, each replacing the one before.
    backlog = ["CRM_Export_20261120.csv", "CRM_Export_20261121.csv", "crm_2026_11_22.csv"]
    for name, day in zip(backlog, ["2026-11-20", "2026-11-21", "2026-11-22"], strict=True):
        code, out, err = drop(cli, tmp_path, name, companies_csv(5))
        assert code == 0, err
        assert f"snapshot {day} staged: 5 rows" in out and "warnings" not in out, out
        assert source_blobs(local_env, day) == {name}
    assert not read_alerts(local_env)
    code, out, _err = cli("status", "--json")
    assert [(s["snapshot_date"], s["file"]) for s in json.loads(out)["crm_snapshots"]] == [
        ("2026-11-20", "CRM_Export_20261120.csv"),
        ("2026-11-21", "CRM_Export_20261121.csv"),
        ("2026-11-22", "crm_2026_11_22.csv"),
    ]


def test_a_snapshot_replaced_under_another_file_name_says_so_naming_both(
    cli, local_env: Path, tmp_path: Path
) -> None:
    # Contract §2 (issue 22). Before: replaced without a word.
    assert drop(cli, tmp_path, "companies_2026-11-20.csv", companies_csv(5))[0] == 0
    code, out, err = drop(cli, tmp_path, "CRM_Export_20261120.csv", companies_csv(6))
    assert code == 0, err
    warning = (
        "CRM_Export_20261120.csv replaces the snapshot of 2026-11-20 staged from companies_2026-11-20.csv"
        " (both file names give 2026-11-20); if companies_2026-11-20.csv was the right one, drop it again"
    )
    assert "snapshot 2026-11-20 staged: 6 rows" in out and f"warnings: {warning}" in out
    assert staged_companies(local_env, "2026-11-20") == 6
    assert source_blobs(local_env, "2026-11-20") == {"CRM_Export_20261120.csv"}
    alerts = read_alerts(local_env)
    assert [(a["severity"], a["kind"], a["activity_date"]) for a in alerts] == [
        ("warning", "crm_file_warning", "2026-11-20")
    ]
    assert alerts[0]["message"] == f"CRM file {warning}"

    # The same file again, or the same bytes under a third name (nothing replaced): no word.
    code, out, _err = drop(cli, tmp_path, "CRM_Export_20261120.csv", companies_csv(6))
    assert code == 0 and "unchanged" in out and "replaces" not in out
    code, out, _err = drop(cli, tmp_path, "crm_2026_11_20.csv", companies_csv(6))
    assert code == 0 and "unchanged" in out and "replaces" not in out
    # Back to the first file: said again, naming the last drop of the bytes it replaces.
    code, out, _err = drop(cli, tmp_path, "companies_2026-11-20.csv", companies_csv(5))
    assert code == 0
    assert (
        "companies_2026-11-20.csv replaces the snapshot of 2026-11-20 staged from crm_2026_11_20.csv" in out
    )
    assert staged_companies(local_env, "2026-11-20") == 5
    assert len(read_alerts(local_env)) == 2


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("companies_0001-01-01.csv", "snapshot date 0001-01-01 is before 1970-01-01"),
        ("companies_9999-12-30.csv", "snapshot date 9999-12-30 (from the file name) is in the future"),
    ],
)
def test_a_snapshot_dated_out_of_range_is_rejected_in_one_line(
    cli, local_env: Path, tmp_path: Path, name: str, phrase: str
) -> None:
    # Before: staged, then every transform died on "OverflowError: date value out of range".
    code, _out, err = drop(cli, tmp_path, name, companies_csv(5))
    assert code == 1 and phrase in one_line(err)
    assert not [a for a in read_alerts(local_env) if a["kind"] == "dead_letter"]
    warehouse = local_env / "warehouse.duckdb"
    assert not warehouse.exists() or staged_companies(local_env, name.split("_")[1][:10]) == 0


def test_a_snapshot_that_lost_most_of_its_companies_is_rejected_unless_forced(
    cli, local_env: Path, tmp_path: Path
) -> None:
    assert drop(cli, tmp_path, "companies_2026-10-01.csv", companies_csv(60))[0] == 0
    # Before: a snapshot of 1 company replaced 60 without a word.
    code, out, err = drop(cli, tmp_path, "companies_2026-10-03.csv", companies_csv(1))
    assert code == 1
    line = one_line(err)
    assert "1 company, down 98% against the 60 of the snapshot of 2026-10-01" in line
    assert "drop it again with --force (or upload it with blob metadata force=true)" in line
    assert staged_companies(local_env, "2026-10-03") == 0 and staged_companies(local_env, "2026-10-01") == 60
    assert any(p.startswith("crm-drop/companies_2026-10-03.csv/") for p in quarantined(local_env))
    assert [a["kind"] for a in read_alerts(local_env) if a["severity"] == "error"] == ["crm_file_rejected"]

    code, out, err = drop(cli, tmp_path, "companies_2026-10-03.csv", companies_csv(1), "--force")
    assert code == 0, err
    assert "size check overridden by force: 1 company, down 98%" in out
    assert staged_companies(local_env, "2026-10-03") == 1


def test_a_snapshot_down_by_more_than_a_tenth_is_staged_with_a_warning(
    cli, local_env: Path, tmp_path: Path
) -> None:
    assert drop(cli, tmp_path, "companies_2026-10-01.csv", companies_csv(60))[0] == 0
    code, out, err = drop(cli, tmp_path, "companies_2026-10-02.csv", companies_csv(50))
    assert code == 0, err
    assert "50 companies, down 17% against the 60 of the snapshot of 2026-10-01" in out
    assert staged_companies(local_env, "2026-10-02") == 50
    assert [a["kind"] for a in read_alerts(local_env)] == ["crm_file_warning"]
    # Within a tenth: no word.
    assert "against the" not in drop(cli, tmp_path, "companies_2026-10-04.csv", companies_csv(48))[1]


@pytest.mark.parametrize(("delimiter", "shown"), [(";", "';'"), ("\t", "tabs")])
def test_a_file_with_another_delimiter_is_rejected_with_a_hint(
    cli, local_env: Path, tmp_path: Path, delimiter: str, shown: str
) -> None:
    # Before: "missing required column(s) ..." and nothing about the delimiter.
    code, _out, err = drop(cli, tmp_path, "companies_2026-10-01.csv", companies_csv(3, delimiter=delimiter))
    assert code == 1
    assert f"it looks delimited by {shown}: the file must be comma-separated" in one_line(err)


def test_spaces_around_values_are_trimmed_quoted_or_not(cli, local_env: Path, tmp_path: Path) -> None:
    """The documented rule (docs/architecture.md, CRM files): exports pad fields, so values are
    trimmed of surrounding whitespace whether they are quoted or not; inner spaces stay."""
    data = (HEADER + '\n"  c-1  ","  Acme   Corp  ", DE ,saas,2026-09-01\n').encode()
    assert drop(cli, tmp_path, "companies_2026-10-01.csv", data)[0] == 0
    with duckdb.connect(str(local_env / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute("SELECT company_id, company_name, country FROM stg.crm_company_snapshot").fetchone()
    assert row == ("c-1", "Acme   Corp", "DE")


def test_a_folder_or_an_unsafe_name_is_one_line_and_writes_nothing(
    cli, local_env: Path, tmp_path: Path
) -> None:
    code, _out, err = cli("crm-drop", str(tmp_path))
    # Before: "no such file".
    assert code == 1 and one_line(err) == f"error: {tmp_path} is a folder, not a CSV file"
    good = tmp_path / "companies_2026-10-01.csv"
    good.write_bytes(companies_csv(3))
    # Before: a traceback (UnsafeBlobName).
    code, _out, err = cli("crm-drop", str(good), "--name", "../evil.csv")
    assert code == 1
    assert "give --name a plain file name such as companies_2026-11-20.csv" in one_line(err)
    assert not (local_env / "blobs").exists() and not (tmp_path / "evil.csv").exists()


def test_a_redrop_of_the_same_file_says_it_was_unchanged(cli, local_env: Path, tmp_path: Path) -> None:
    assert drop(cli, tmp_path, "companies_2026-10-01.csv", companies_csv(3))[0] == 0
    code, out, err = drop(cli, tmp_path, "companies_2026-10-01.csv", companies_csv(3))
    # Before: "staged" again.
    assert code == 0, err
    assert "snapshot 2026-10-01 unchanged: 3 rows, the same as already staged: nothing to rebuild" in out


def test_rows_quarantined_from_a_crm_file_show_in_status(cli, local_env: Path, tmp_path: Path) -> None:
    data = companies_csv(30, extra_rows=",Blank Id,DE,saas,2026-09-01\n")
    code, out, _err = drop(cli, tmp_path, "companies_2026-10-01.csv", data)
    assert code == 0
    where = "quarantine/crm-drop/companies_2026-10-01.csv/"
    assert f"1 quarantined ({where}" in out
    # Before: status said nothing about the CRM side.
    code, out, _err = cli("status")
    assert code == 0 and f"companies_2026-10-01.csv: 1 row quarantined ({where}" in out
    code, out, _err = cli("status", "--json")
    files = json.loads(out)["crm_files"]
    assert [(f["blob"], f["status"], f["quarantined"]) for f in files] == [
        ("companies_2026-10-01.csv", "staged", 1)
    ]
    assert files[0]["quarantine"].startswith(where) and files[0]["quarantine"].endswith("rejected-rows.jsonl")


def test_status_shows_each_snapshot_the_days_it_serves_and_each_rejected_file(
    cli, local_env: Path, tmp_path: Path
) -> None:
    assert drop(cli, tmp_path, "companies_2026-10-01.csv", companies_csv(60))[0] == 0
    assert drop(cli, tmp_path, "companies_2026-10-04.csv", companies_csv(58))[0] == 0
    assert drop(cli, tmp_path, "companies_2026-10-06.csv", companies_csv(1))[0] == 1  # lost 98%: rejected
    code, out, _err = cli("status")
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("CRM SNAPSHOT"))
    assert lines[header].split() == [
        "CRM",
        "SNAPSHOT",
        "FILE",
        "COMPANIES",
        "QUARANTINED",
        "EFFECTIVE",
        "FOR",
    ]
    assert lines[header + 1].split() == [
        "2026-10-01",
        "companies_2026-10-01.csv",
        "60",
        "0",
        "2026-10-01",
        "..",
        "2026-10-03",
    ]
    assert lines[header + 2].split() == [
        "2026-10-04",
        "companies_2026-10-04.csv",
        "58",
        "0",
        "2026-10-04",
        "..",
        "2026-10-11",
    ]
    assert any(line.startswith("companies_2026-10-06.csv: rejected (1 company, down 98%") for line in lines)
    snapshots = json.loads(cli("status", "--json")[1])["crm_snapshots"]
    assert [
        (s["snapshot_date"], s["companies"], s["effective_from"], s["effective_to"]) for s in snapshots
    ] == [
        ("2026-10-01", 60, "2026-10-01", "2026-10-03"),
        ("2026-10-04", 58, "2026-10-04", "2026-10-11"),
    ]


def test_a_drop_the_warehouse_cannot_hold_is_one_line_and_shows_in_status(
    cli, local_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real DuckDB out of its memory cap (16 MB here: below the setting's floor of 64, so the
    drop can be small): the drop fails once in one line naming the setting, status lists the
    file as not staged with the reason, and the same file dropped with room to spare is staged."""
    import shared.bootstrap as bootstrap
    from shared.adapters.warehouse_duckdb import DuckDbWarehouse

    roomy = bootstrap.make_warehouse
    monkeypatch.setattr(
        bootstrap,
        "make_warehouse",
        lambda settings, read_only=False: DuckDbWarehouse(
            settings.local_data_dir / "warehouse.duckdb", memory_mb=16, read_only=read_only
        ),
    )
    data = companies_csv(200_000)
    code, out, err = drop(cli, tmp_path, "companies_2026-10-01.csv", data)
    assert code == 1 and "not staged: the local warehouse needed more memory" in out
    assert "LOCAL_WAREHOUSE_MEMORY_MB=16 allows" in one_line(err)
    assert [a["kind"] for a in read_alerts(local_env)] == ["warehouse_out_of_memory"]
    code, out, _err = cli("status")
    assert "companies_2026-10-01.csv: not staged: the local warehouse needed more memory" in out
    code, out, _err = cli("status", "--json")
    assert [(f["blob"], f["status"]) for f in json.loads(out)["crm_files"]] == [
        ("companies_2026-10-01.csv", "failed")
    ]

    monkeypatch.setattr(bootstrap, "make_warehouse", roomy)
    code, out, err = drop(cli, tmp_path, "companies_2026-10-01.csv", data)
    assert code == 0, err
    assert staged_companies(local_env, "2026-10-01") == 200_000
    code, out, _err = cli("status", "--json")
    assert [f["status"] for f in json.loads(out)["crm_files"]] == ["staged"]
