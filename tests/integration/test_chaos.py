"""Chaos (issue 21): random SIGKILL, SIGTERM and SIGINT of `run`, `backfill`, `crm-drop` and
`rebuild` at random moments, CRM drops that replace and revert snapshots, commands started two at
a time; then "let it finish" (drop again what the sender knows was never announced, one plain
`backfill`, no `rebuild`) and the table must equal an independent recomputation (tests/reference.py)
from what the API serves and the CRM files last dropped.

Bounded and seeded: SEEDS x STEPS actions, each moment chosen from progress seen outside the
command (it printed or logged something, the API was asked, a day was built), plus a seeded
random delay. docs/reliability.md lists the seeds and what they cover.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import signal
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from shared.local.simulator import UsageApiSimulator
from tests.processes import Child, Children
from tests.reference import diff_tables, expected_table
from tests.support import API_KEY, GOLDEN, REPO, child_environment, ledger_rows, read_table
from tests.test_reference import stage_golden

pytestmark = pytest.mark.slow

SEEDS = (21, 2112, 40321)
STEPS = 7
DAYS = sorted(GOLDEN.records())
SIGNALS = (None, signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
# The snapshots dropped, A or B at random: two dates, so most drops replace or revert one.
CHURNED = ("companies_2026-10-01.csv", "companies_2026-10-04.csv")


def variants(folder: Path) -> dict[str, list[Path]]:
    """Per CRM file name, snapshot A (the golden file) and B (one company renamed)."""
    found: dict[str, list[Path]] = {}
    for path in GOLDEN.crm_files():
        a, b = folder / "A" / path.name, folder / "B" / path.name
        a.parent.mkdir(parents=True, exist_ok=True)
        b.parent.mkdir(parents=True, exist_ok=True)
        a.write_bytes(path.read_bytes())
        b.write_bytes(path.read_bytes().replace(b"Initech", b"Initrode"))
        found[path.name] = [a, b]
    return found


def command(rng: random.Random, files: dict[str, list[Path]]) -> list[str]:
    kind = rng.choice(["run", "backfill", "crm-drop", "crm-drop", "rebuild"])
    if kind == "run":
        return ["run", "--date", rng.choice(DAYS), *(["--force"] if rng.random() < 0.3 else [])]
    if kind == "backfill":
        first = rng.randrange(len(DAYS))
        last = rng.randrange(first, len(DAYS))
        return ["backfill", "--from", DAYS[first], "--to", DAYS[last]]
    if kind == "crm-drop":
        return ["crm-drop", str(rng.choice(files[rng.choice(CHURNED)]))]
    return ["rebuild"]


def _built(data_dir: Path) -> int:
    ledger = data_dir / "ledger.sqlite3"
    if not ledger.exists():
        return 0
    try:
        [row] = ledger_rows(
            data_dir,
            "SELECT COUNT(*) FROM entries WHERE partition = 'days' AND json_extract(data, '$.built_at') != ''",
        )
    except sqlite3.OperationalError:
        return 0
    return int(row[0])


def _pending(data_dir: Path) -> list[str]:
    """Days the ledger says still owe a build."""
    rows = ledger_rows(
        data_dir,
        "SELECT key FROM entries WHERE partition = 'days' AND COALESCE(json_extract(data, '$.pending'), '') != ''",
    )
    return sorted(str(r[0]) for r in rows)


def _log_size(data_dir: Path) -> int:
    try:
        return (data_dir / "pipeline.log").stat().st_size
    except FileNotFoundError:
        return 0


def signal_at_a_moment(
    rng: random.Random, child: Child, data_dir: Path, api: UsageApiSimulator, seen: Counter[str]
) -> None:
    """Wait for the moment (progress seen from outside), then send a random stop signal."""
    stop = rng.choice(SIGNALS)
    if stop is None:
        return
    moment = rng.choice(["at-start", "logged", "api-asked", "a-day-built"])
    log_size, asked, built = _log_size(data_dir), api.count(), _built(data_dir)
    reached = {
        "at-start": lambda: True,
        "logged": lambda: _log_size(data_dir) > log_size,
        "api-asked": lambda: api.count() > asked,
        "a-day-built": lambda: _built(data_dir) != built,
    }[moment]
    deadline = time.monotonic() + 30
    while not reached() and child.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if moment != "at-start":
        time.sleep(rng.uniform(0, 0.3))
    if child.process.poll() is None:
        child.send_signal(stop)
        seen[f"{signal.Signals(stop).name} {moment}"] += 1


def in_python_startup(err: str) -> bool:
    """Ctrl-C while the interpreter itself starts (site, its .pth files, runpy compiling the
    entry module), before any line of the command runs: no frame is the command's own. A limit
    of `python -m`, listed in docs/reliability.md."""
    frames = [line.strip() for line in err.splitlines() if line.strip().startswith("File ")]
    ours = (f"{REPO}/shared/", f"{REPO}/functions/", "function_app.py")
    return err.rstrip().endswith(("KeyboardInterrupt", "KeyboardInterrupt:")) and not any(
        any(o in f for o in ours) for f in frames
    )


def unannounced(data_dir: Path) -> list[Path]:
    """CRM files in the store whose bytes the ledger never staged: their drop was killed between
    the write and its announcement. Their sender drops them again (Event Grid would retry)."""
    blobs = sorted((data_dir / "blobs" / "crm-drop").glob("*.csv"))
    staged: set[str] = set()
    ledger = data_dir / "ledger.sqlite3"
    if ledger.exists():
        staged = {
            str(r[0])
            for r in ledger_rows(
                data_dir, "SELECT json_extract(data, '$.checksum') FROM entries WHERE partition = 'crm'"
            )
        }
    return [b for b in blobs if hashlib.sha256(b.read_bytes()).hexdigest() not in staged]


def recomputed(data_dir: Path, tmp_path: Path) -> list[dict[str, object]]:
    """The reference's table from the golden API answers and the CRM files last dropped."""
    root = tmp_path / "final-world"
    shutil.copytree(GOLDEN.root / "api", root / "api")
    (root / "crm").mkdir()
    for blob in (data_dir / "blobs" / "crm-drop").glob("*.csv"):
        shutil.copy(blob, root / "crm" / blob.name)
    world = stage_golden(root)
    return expected_table(world.usage, world.snapshots)


@pytest.mark.parametrize("seed", SEEDS)
def test_chaos_then_let_it_finish_converges(seed: int, tmp_path: Path, children: Children) -> None:
    rng = random.Random(seed)
    files = variants(tmp_path / "variants")
    records = GOLDEN.records()
    data_dir = tmp_path / "local"
    seen: Counter[str] = Counter()
    with UsageApiSimulator(lambda d: records.get(d.isoformat(), []), api_key=API_KEY) as api:
        env = child_environment(data_dir, api)
        cli = [sys.executable, "-m", "shared.cli"]
        # Usage first, so that every snapshot replaced or reverted later has days to rebuild.
        code, out, err = children.start(
            [*cli, "backfill", "--from", DAYS[0], "--to", DAYS[-1]], env=env
        ).finish(60)
        assert code == 0 and "waiting" in out, (out, err)  # no snapshot yet: every day waits
        for _ in range(STEPS):
            args = [command(rng, files) for _ in range(2 if rng.random() < 0.3 else 1)]
            started = [children.start([*cli, *a], env=env) for a in args]
            for child in started:
                signal_at_a_moment(rng, child, data_dir, api, seen)
            for a, child in zip(args, started, strict=True):
                code, _out, err = child.finish(timeout=60)  # a stop signal always stops it
                if in_python_startup(err):
                    seen["interrupted inside Python's own startup"] += 1
                else:
                    assert "Traceback" not in err, (a, err)
                seen[f"{a[0]} exit {code}"] += 1
            if len(started) == 1 and code == 0:  # exit 0 promises nothing is left owed
                assert _pending(data_dir) == [], (args, sorted(seen.items()))
        # Let it finish: what was never announced is dropped again, then one plain backfill.
        for path in unannounced(data_dir):
            code, out, err = children.start([*cli, "crm-drop", str(path)], env=env).finish(60)
            assert code == 0, (out, err)
        code, out, err = children.start(
            [*cli, "backfill", "--from", DAYS[0], "--to", DAYS[-1]], env=env
        ).finish(60)
        assert code == 0, (out, err, sorted(seen.items()))
    assert diff_tables(read_table(data_dir), recomputed(data_dir, tmp_path)) == [], sorted(seen.items())
    print(f"seed {seed}: {sorted(seen.items())}")
