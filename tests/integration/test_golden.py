"""The golden world, end to end through the CLI and the real function handlers."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reference import diff_tables, load_expected_csv
from tests.support import GOLDEN, read_alerts, read_table


def quarantined(data_dir: Path, suffix: str) -> list[dict]:
    root = data_dir / "blobs" / "quarantine"
    return [json.loads(line) for p in sorted(root.rglob(suffix)) for line in p.read_text().splitlines()]


def test_golden_world_end_to_end(cli, local_env: Path) -> None:
    for path in GOLDEN.crm_files():
        code, out, err = cli("crm-drop", str(path))
        assert code == 0, err
    code, out, err = cli("backfill", "--from", "2026-10-01", "--to", "2026-10-10")
    assert code == 0, err
    assert out.count(" built ") == 10, out

    differences = diff_tables(read_table(local_env), load_expected_csv(GOLDEN.expected_csv))
    assert differences == [], "\n".join(differences[:20])

    # Invalid API records and bad CRM rows are in quarantine, with reasons, under their source blob's name.
    records = quarantined(local_env, "rejected-records.jsonl")
    reasons = sorted(r["reason"] for r in records)
    assert len(records) == 6, reasons
    assert any("blank company_id" in r for r in reasons)
    assert any("negative" in r for r in reasons)
    assert any("not the requested date" in r for r in reasons)
    rows = quarantined(local_env, "rejected-rows.jsonl")
    assert len(rows) == 10
    assert {r["reason"].split()[0] for r in rows} == {"blank", "duplicate", "unparseable"}
    crm_quarantine = local_env / "blobs" / "quarantine" / "crm-drop" / "companies_2026-10-02.csv"
    assert any(crm_quarantine.rglob("rejected-rows.jsonl"))

    # Every input row is staged or quarantined: none silently dropped.
    staged_usage = read_table(local_env, "SELECT COUNT(*) AS n FROM stg.product_usage_daily")[0]["n"]
    api_total = sum(len(json.loads(p.read_text())) for p in (GOLDEN.root / "api").glob("*.json"))
    assert staged_usage + len(records) == api_total


def test_days_wait_for_their_snapshot_then_build_in_any_order(cli, local_env: Path) -> None:
    code, out, err = cli("backfill", "--from", "2026-10-01", "--to", "2026-10-10")
    assert code == 0, err  # waiting is not a failure
    assert out.count(" waiting ") == 10, out
    assert read_table(local_env) == []
    for path in reversed(GOLDEN.crm_files()):
        assert cli("crm-drop", str(path))[0] == 0
    differences = diff_tables(read_table(local_env), load_expected_csv(GOLDEN.expected_csv))
    assert differences == [], "\n".join(differences[:20])
    assert not [a for a in read_alerts(local_env) if a["severity"] == "error"]


def test_rerun_without_force_changes_nothing_and_force_keeps_loaded_at(cli, local_env: Path, api) -> None:
    for path in GOLDEN.crm_files():
        cli("crm-drop", str(path))
    assert cli("backfill", "--from", "2026-10-01", "--to", "2026-10-10")[0] == 0
    before = read_table(local_env)
    requests_before = len(api.requests_seen)

    assert cli("run", "--date", "2026-10-04")[0] == 0
    assert read_table(local_env) == before
    assert len(api.requests_seen) == requests_before  # not fetched again

    code, _out, err = cli("run", "--date", "2026-10-04", "--force")
    assert code == 0, err
    assert len(api.requests_seen) > requests_before  # fetched again
    assert read_table(local_env) == before  # same values, same loaded_at and run ids
