"""`python -m shared.cli health` and `serve`'s GET /api/health on the local pieces (issue 20).

What "working" means locally: the settings load, LOCAL_DATA_DIR can be written (the probe
blob and the ledger probe), the in-process bus is there, the API answers page 1 of yesterday
with the key, and the warehouse can be read, or does not exist yet (a fresh folder: the first
load creates it, health does not).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.config import Settings
from shared.domain.health import CHECKS
from shared.local.pipeline import LocalPipeline
from shared.local.server import LocalServer
from tests.support import API_KEY, GOLDEN, read_alerts


def lines_by_check(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split(maxsplit=4)[1:] for line in out.splitlines()}


def test_health_passes_on_a_fresh_folder_and_creates_no_warehouse(cli, local_env: Path) -> None:
    code, out, err = cli("health")
    assert code == 0, out + err
    assert err == ""
    checks = lines_by_check(out)
    assert list(checks) == list(CHECKS)
    assert all(words[0] == "ok" and words[2] == "ms" for words in checks.values()), out
    assert "no warehouse yet" in checks["warehouse"][3]
    assert not (local_env / "warehouse.duckdb").exists()
    assert not list((local_env / "blobs").rglob("probe-*"))  # the probe blob is gone again
    assert API_KEY not in out + err


def test_health_passes_after_a_run_and_reads_the_table(cli, local_env: Path) -> None:
    cli("crm-drop", str(GOLDEN.crm_files()[0]))
    assert cli("run", "--date", "2026-10-01")[0] == 0
    code, out, err = cli("health")
    assert code == 0, out + err
    assert "schema 2, 7 tables read (6 hold rows)" in out  # DuckDB's schema version


def test_health_fails_in_one_line_naming_the_api_when_it_is_down(cli, monkeypatch, refused_port: int) -> None:
    monkeypatch.setenv("USAGE_API_BASE_URL", f"http://127.0.0.1:{refused_port}")
    code, out, err = cli("health")
    assert code == 1
    checks = lines_by_check(out)
    assert checks["usage_api"][0] == "FAIL" and "connection refused" in checks["usage_api"][3]
    assert [name for name, words in checks.items() if words[0] == "FAIL"] == ["usage_api"]
    assert err.count("\n") == 1 and err.startswith("error: usage_api: ")
    assert "USAGE_API_BASE_URL" in err
    assert API_KEY not in out + err


def test_health_fails_in_one_line_naming_the_warehouse_when_it_cannot_be_read(cli, local_env: Path) -> None:
    local_env.mkdir(parents=True)
    (local_env / "warehouse.duckdb").write_bytes(b"garbage, not a DuckDB file\n" * 200)
    code, out, err = cli("health")
    assert code == 1
    assert lines_by_check(out)["warehouse"][0] == "FAIL"
    assert err.count("\n") == 1 and err.startswith("error: warehouse: the local warehouse ")
    assert "move it aside" in err


def test_health_json_and_a_bad_setting(cli, monkeypatch) -> None:
    code, out, _ = cli("health", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["status"] == "ok"
    assert [c["name"] for c in payload["checks"]] == list(CHECKS)
    monkeypatch.setenv("USAGE_API_MAX_ATTEMPTS", "many")
    code, out, err = cli("health")
    assert code == 1
    assert lines_by_check(out)["settings"][0] == "FAIL" and "USAGE_API_MAX_ATTEMPTS" in err
    assert err.count("\n") == 1


def test_health_never_prints_a_secret(cli, local_env: Path, monkeypatch, refused_port: int) -> None:
    """The key refused, and a webhook whose secret path and query cannot be reached."""
    local_env.mkdir(parents=True, exist_ok=True)  # so that health logs to pipeline.log
    key, hook = (
        "sk-planted-6c2f0e",
        f"http://127.0.0.1:{refused_port}/services/T1/B2/hook-secret?sig=q-secret",
    )
    monkeypatch.setenv("USAGE_API_KEY", key)
    monkeypatch.setenv("ALERT_WEBHOOK_URL", hook)
    monkeypatch.setenv("ALERT_WEBHOOK_BACKOFF_S", "0")
    code, out, err = cli("health", "--send-test-alert")
    assert code == 1
    failing = {name for name, words in lines_by_check(out).items() if words[0] == "FAIL"}
    assert failing == {"usage_api", "alert_sink"}
    code, as_json, _ = cli("health", "--json", "--send-test-alert")
    log = (local_env / "pipeline.log").read_text()
    for secret in (key, "hook-secret", "q-secret", "/services/T1/B2"):
        assert secret not in out + err + as_json + log


def test_the_test_alert_goes_to_the_local_file(cli, local_env: Path) -> None:
    code, out, _ = cli("health", "--send-test-alert")
    assert code == 0 and "test alert sent to file" in out
    assert [a["kind"] for a in read_alerts(local_env)] == ["health_test_alert"]


# --- serve ---------------------------------------------------------------------------------


@pytest.fixture
def served(local_env: Path) -> Iterator[LocalServer]:
    pipe = LocalPipeline(Settings.from_env())
    server = LocalServer(pipe, port=0)
    thread = threading.Thread(target=server._server.serve_forever, daemon=True)
    thread.start()
    yield server
    server._server.shutdown()
    server._server.server_close()
    pipe.close()


def comparable(payload: dict[str, Any]) -> dict[str, Any]:
    """The answer without what differs between two runs: the time taken and the probe's name."""
    return {
        "status": payload["status"],
        "checks": [
            {**c, "ms": 0, "detail": re.sub(r"probe-[0-9a-f]{32}", "probe-*", c["detail"])}
            for c in payload["checks"]
        ],
    }


def test_serve_answers_get_api_health_with_the_same_json_as_the_cli(served: LocalServer, cli) -> None:
    response = requests.get(f"{served.base_url}/api/health", params={"code": "any"}, timeout=60)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    code, out, _ = cli("health", "--json")
    assert code == 0
    assert comparable(response.json()) == comparable(json.loads(out))


def test_serve_answers_503_when_a_piece_fails(served: LocalServer, local_env: Path) -> None:
    (local_env / "warehouse.duckdb").write_bytes(b"garbage" * 500)
    response = requests.get(f"{served.base_url}/api/health", timeout=60)
    assert response.status_code == 503
    payload = response.json()
    assert payload["status"] == "failing"
    assert [c["name"] for c in payload["checks"] if not c["ok"]] == ["warehouse"]


# --- issue 20 review ------------------------------------------------------------------------


def test_health_on_a_missing_folder_passes_and_creates_nothing(cli, local_env: Path) -> None:
    """A mistyped LOCAL_DATA_DIR used to be created (blobs, bus, ledger, command.lock)."""
    code, out, err = cli("health")
    assert code == 0, out + err
    assert not local_env.exists()
    checks = lines_by_check(out)
    assert "does not exist yet; the first run creates it" in checks["blob_store"][3]


@pytest.mark.parametrize("under", [False, True])
def test_health_json_when_local_data_dir_is_a_file(cli, local_env: Path, monkeypatch, under: bool) -> None:
    local_env.parent.mkdir(parents=True, exist_ok=True)
    local_env.write_text("not a folder")
    if under:
        monkeypatch.setenv("LOCAL_DATA_DIR", str(local_env / "data"))
    code, out, _err = cli("health", "--json")
    assert code == 1
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert not checks["blob_store"]["ok"] and "LOCAL_DATA_DIR" in checks["blob_store"]["detail"]
    assert not checks["ledger"]["ok"]
    assert local_env.read_text() == "not a folder"


def test_health_does_not_wait_for_a_command_holding_the_folder(cli, local_env: Path) -> None:
    from shared.local.folder_lock import FolderLock

    local_env.mkdir(parents=True)
    outcome: list[tuple[int, str, str]] = []
    with FolderLock(local_env, "backfill --from 2026-01-01 --to 2026-03-31"):
        worker = threading.Thread(target=lambda: outcome.append(cli("health")), daemon=True)
        worker.start()
        worker.join(60)
        assert outcome, "health waited for the folder lock"
    code, out, err = outcome[0]
    assert code == 0, out + err
    assert "not opened: `backfill --from 2026-01-01" in lines_by_check(out)["warehouse"][3]


def test_an_unresolved_webhook_reference_is_a_note_and_prints_no_raw_line(cli, monkeypatch) -> None:
    """The review's repro: a first `azd up` without the webhook secret."""
    monkeypatch.setenv(
        "ALERT_WEBHOOK_URL",
        "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/alert-webhook-url)",
    )
    code, out, err = cli("health")
    assert code == 0, out + err
    assert err == ""  # no raw "treating it as unset" line before logging is set up
    assert (
        "; note: ALERT_WEBHOOK_URL is an unresolved Key Vault reference"
        in lines_by_check(out)["alert_sink"][3]
    )


def test_a_newer_local_schema_is_said_as_such_not_move_it_aside(cli, local_env: Path) -> None:
    import duckdb

    assert cli("init-db")[0] == 0
    with duckdb.connect(str(local_env / "warehouse.duckdb")) as con:
        con.execute("UPDATE analytics.schema_version SET version = 99")
    code, _out, err = cli("health")
    assert code == 1
    assert "schema version 99" in err and "newer than this app" in err
    assert "move it aside" not in err and not err.rstrip().endswith("...")


def test_health_on_a_version_one_warehouse_says_so_and_changes_nothing(cli, local_env: Path) -> None:
    from tests.adapters.test_warehouse_schema import recorded, table_state, version_one_file

    local_env.mkdir(parents=True)
    path = local_env / "warehouse.duckdb"
    version_one_file(path)
    before = table_state(path)
    code, out, err = cli("health")
    assert code == 0, out + err
    warehouse = lines_by_check(out)["warehouse"]
    assert (
        warehouse[0] == "ok"
        and warehouse[3] == "schema 1; the next command that writes upgrades it to schema 2"
    )
    assert table_state(path) == before and recorded(path) == [(1,)]  # health creates nothing


def test_health_on_a_read_only_folder_names_the_folder_not_a_setting(
    cli, local_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root no permission stops a write, so the read-only mount is the write that fails."""
    import errno

    local_env.mkdir(parents=True)
    write_bytes = Path.write_bytes

    def read_only_mount(self: Path, data: Any) -> int:
        if self.parent == local_env:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", read_only_mount)
    code, _out, err = cli("health")
    assert code == 1
    assert err == (
        f"error: settings: LOCAL_DATA_DIR {local_env} is not writable (Read-only file system);"
        " correct it in the app settings (locally: the environment)\n"
    )
    assert cli("run", "--date", "2026-10-01")[2] == (
        f"error: LOCAL_DATA_DIR {local_env} is not writable (Read-only file system);"
        " point it at a folder you can write\n"
    )
