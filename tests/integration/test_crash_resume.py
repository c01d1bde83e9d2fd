"""A process killed with SIGKILL at any point: the next run finishes the work, nothing lost or doubled.

The local host journals its bus (bus.sqlite3), lands blobs by rename, and stages and builds in
transactions, so a kill leaves only work that is either done or still queued.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.config import Settings
from shared.local.pipeline import LocalPipeline
from shared.local.simulator import Fault, UsageApiSimulator
from shared.services.status import crm_file_status
from tests.processes import Children
from tests.reference import diff_tables, load_expected_csv
from tests.support import API_KEY, GOLDEN, REPO, child_environment, ledger_rows, read_table

EXPECTED = load_expected_csv(GOLDEN.expected_csv)
DRIVER = """
import sys
from pathlib import Path
from shared.local.pipeline import LocalPipeline
from shared.config import Settings
pipeline = LocalPipeline(Settings.from_env())
for path in sys.argv[1:]:
    pipeline.drop_crm(Path(path).read_bytes(), Path(path).name)
pipeline.replay({"from": "2026-10-01", "to": "2026-10-10"})
pipeline.close()
"""


def wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_a_fetch_killed_part_way_resumes_from_the_landed_pages(tmp_path: Path, cli, monkeypatch) -> None:
    records = GOLDEN.records()
    # Page 3 of 2026-10-01 hangs the first time it is asked for: the process is killed there.
    # Page 1 reports total_pages (4), so pages 2-4 are fetched at once: 2 and 4 land while 3 hangs.
    stall = Fault(kind="delay", date="2026-10-01", page=3, seconds=60, times=1)
    raw_day = tmp_path / "local" / "blobs" / "raw" / "usage" / "2026-10-01"

    def landed() -> list[str]:
        return sorted(p.name for p in raw_day.rglob("page-*.json"))

    with UsageApiSimulator(lambda d: records.get(d.isoformat(), []), api_key=API_KEY, faults=[stall]) as api:
        env = child_environment(tmp_path / "local", api)
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "run", "--date", "2026-10-01"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Blobs land by rename: a page file that exists is whole.
            wait_for(
                lambda: (
                    api.count(date="2026-10-01", page=3) >= 1
                    and {"page-00002.json", "page-00004.json"} <= set(landed())
                )
            )
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert landed() == ["page-00001.json", "page-00002.json", "page-00004.json"]

        for name, value in env.items():
            if name in ("LOCAL_DATA_DIR", "USAGE_API_BASE_URL", "USAGE_API_KEY", "USAGE_API_PAGE_SIZE"):
                monkeypatch.setenv(name, value)
        assert cli("crm-drop", str(GOLDEN.crm_files()[0]))[0] == 0
        code, _out, err = cli("run", "--date", "2026-10-01")
        assert code == 0, err
        assert [api.count(date="2026-10-01", page=n) for n in (1, 2, 3, 4)] == [1, 1, 2, 1]
    runs = {
        p.parent.name for p in (tmp_path / "local" / "blobs" / "raw" / "usage" / "2026-10-01").rglob("*.json")
    }
    assert len(runs) == 1  # the same run, resumed
    day = [r for r in EXPECTED if str(r["activity_date"]) == "2026-10-01"]
    actual = [r for r in read_table(tmp_path / "local") if str(r["activity_date"]) == "2026-10-01"]
    assert diff_tables(actual, day) == []


def _built_days(data_dir: Path) -> int:
    """Days the ledger says are built, read beside the process writing it (WAL readers may)."""
    ledger = data_dir / "ledger.sqlite3"
    if not ledger.exists():
        return 0
    try:
        [row] = ledger_rows(
            data_dir,
            "SELECT COUNT(*) FROM entries WHERE partition = 'days' AND json_extract(data, '$.status') = 'built'",
        )
    except sqlite3.OperationalError:  # the table is not made yet
        return 0
    return int(row[0])


# Where each kill lands, as the progress seen from outside (not a time: on a busy machine the
# same 0.45 s once fell before the imports were done). The run drops 8 CRM files, fetches about
# 40 pages and builds 10 days, interleaved; counts are cumulative over the killed runs.
MILESTONES: dict[str, Callable[[Path, UsageApiSimulator], bool]] = {
    "a-crm-drop-landed": lambda data, api: any((data / "blobs" / "crm-drop").glob("*")),
    "first-fetch": lambda data, api: api.count() >= 1,
    "half-the-pages": lambda data, api: api.count() >= 20,
    "most-days-built": lambda data, api: _built_days(data) >= 6,
}


def _run_killed_at(milestone: str, children: Children, env: dict[str, str], api: UsageApiSimulator) -> None:
    """The whole run in a process of its own, SIGKILLed as soon as `milestone` is seen."""
    data_dir = Path(env["LOCAL_DATA_DIR"])
    reached = MILESTONES[milestone]
    process = children.start([sys.executable, "-c", DRIVER, *map(str, GOLDEN.crm_files())], env=env)
    wait_for(lambda: reached(data_dir, api) or process.process.poll() is not None, timeout_s=120)
    process.kill()
    assert reached(data_dir, api), f"the run ended before {milestone}: {process.finish()}"


@pytest.mark.parametrize(
    "kill_at",
    [
        ["a-crm-drop-landed"],
        ["first-fetch"],
        ["half-the-pages"],
        ["most-days-built"],
        ["first-fetch", "half-the-pages", "most-days-built"],
    ],
    ids=["crm-drops", "first-fetches", "mid-run", "late-builds", "three-kills"],
)
def test_killed_at_any_moment_the_next_run_converges(
    tmp_path: Path, cli, monkeypatch, children: Children, kill_at: list[str]
) -> None:
    """Kills land during the CRM drops, fetches, staging and builds alike."""
    records = GOLDEN.records()
    data_dir = tmp_path / "local"
    crm = [str(p) for p in GOLDEN.crm_files()]
    with UsageApiSimulator(lambda d: records.get(d.isoformat(), []), api_key=API_KEY) as api:
        env = child_environment(data_dir, api)
        for milestone in kill_at:
            _run_killed_at(milestone, children, env, api)
        for name in ("LOCAL_DATA_DIR", "USAGE_API_BASE_URL", "USAGE_API_KEY", "USAGE_API_PAGE_SIZE"):
            monkeypatch.setenv(name, env[name])
        # The next run. A drop the kill interrupted before it was announced is repeated by its
        # sender (on Azure, Event Grid retries); everything else is still queued in the journal.
        pipeline = LocalPipeline(Settings.from_env())
        unannounced = [p for p in crm if crm_file_status(pipeline.services, Path(p).name) is None]
        pipeline.close()
        for path in unannounced:
            assert cli("crm-drop", path)[0] == 0
        code, _out, err = cli("backfill", "--from", "2026-10-01", "--to", "2026-10-10")
        assert code == 0, err
    assert diff_tables(read_table(data_dir), EXPECTED) == []
    staged = read_table(
        data_dir, "SELECT activity_date, COUNT(*) AS n FROM stg.product_usage_daily GROUP BY 1"
    )
    assert sum(r["n"] for r in staged) == 369  # every valid golden record once (375 received, 6 invalid)


KILLED_AFTER_ENQUEUE = """
import os, signal, sys
from pathlib import Path
from shared.local.pipeline import LocalPipeline
from shared.config import Settings
pipeline = LocalPipeline(Settings.from_env())
for path in sys.argv[1:]:
    pipeline.services.blobs.put("crm-drop", Path(path).name, Path(path).read_bytes())  # announced, not yet handled
response = pipeline.host.http("POST", "replay", body={"from": "2026-10-01", "to": "2026-10-10"})
assert response.status_code == 202
os.kill(os.getpid(), signal.SIGKILL)  # dies holding every message
"""


def test_messages_queued_by_a_killed_process_are_delivered_by_the_next_one(
    tmp_path: Path, cli, monkeypatch
) -> None:
    records = GOLDEN.records()
    data_dir = tmp_path / "local"
    with UsageApiSimulator(lambda d: records.get(d.isoformat(), []), api_key=API_KEY) as api:
        env = child_environment(data_dir, api)
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_AFTER_ENQUEUE, *map(str, GOLDEN.crm_files())],
            cwd=REPO,
            env=env,
            capture_output=True,
            check=False,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
        assert api.requests_seen == []  # it died before handling anything
        for name in ("LOCAL_DATA_DIR", "USAGE_API_BASE_URL", "USAGE_API_KEY", "USAGE_API_PAGE_SIZE"):
            monkeypatch.setenv(name, env[name])
        # Any command starts the local host, which delivers what the journal still holds.
        code, _out, err = cli("run", "--date", "2026-10-10")
        assert code == 0, err
    assert diff_tables(read_table(data_dir), EXPECTED) == []
