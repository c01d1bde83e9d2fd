"""Ctrl-C always stops (issue 21, item 4): DuckDB's "Query interrupted" is the user's stop, not a
failed delivery; Ctrl-C while the modules load prints no traceback; `serve` starts nothing queued
once it is stopping."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.warehouse_duckdb import DuckDbWarehouse
from shared.adapters.warehouse_sql import SqlWarehouse
from shared.domain import names
from shared.local.cli import EXIT_INTERRUPTED
from shared.local.pipeline import LocalPipeline
from shared.local.server import LocalServer
from shared.ports import BuildParams, BuildResult, OutgoingMessage
from tests.processes import Children
from tests.support import GOLDEN, REPO, one_error_line, read_table

DAYS = sorted(GOLDEN.records())


def test_ctrl_c_during_a_duckdb_build_exits_130_and_keeps_the_message(
    cli: Callable[..., tuple[int, str, str]], local_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in GOLDEN.crm_files():
        assert cli("crm-drop", str(path))[0] == 0
    real = SqlWarehouse.build_days
    presses = [1, 2, 3, 4, 5, 6]  # more presses than deliveries before a dead letter

    def interrupted(self: SqlWarehouse, days: list[date], params: BuildParams) -> BuildResult:
        if presses and days:
            presses.pop()
            raise RuntimeError("Query interrupted")  # what DuckDB raises when it takes SIGINT
        return real(self, days, params)

    monkeypatch.setattr(SqlWarehouse, "build_days", interrupted)
    for _ in range(6):
        code, out, err = cli("run", "--date", DAYS[0])
        assert code == EXIT_INTERRUPTED, (out, err)
        assert one_error_line(err).startswith("interrupted;")
    assert not presses and read_table(local_env) == []

    code, out, err = cli("run", "--date", DAYS[0])  # the message was kept: this one builds
    assert code == 0, (out, err)
    assert {str(r["activity_date"]) for r in read_table(local_env)} == {DAYS[0]}
    alerts = local_env / "alerts.jsonl"
    assert not alerts.exists() or "dead_letter" not in alerts.read_text()


# The command line, with a Ctrl-C timed from the moment `import duckdb` starts.
_CTRL_C_INTO_DUCKDB_IMPORT = """
import os, runpy, signal, sys, threading
delay = float(sys.argv[1])
class Timed:
    def find_spec(self, name, *_):
        if name == "duckdb":
            sys.meta_path.remove(self)
            threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)).start()
sys.meta_path.insert(0, Timed())
sys.argv = ["shared.cli", *sys.argv[2:]]
runpy.run_module("shared.cli", run_name="__main__")
"""


def test_ctrl_c_while_duckdb_loads_stops_in_one_line(local_env: Path, tmp_path: Path) -> None:
    """DuckDB's extension, cut into while it builds its enums, aborted the process (exit 134,
    "Critical nanobind error", a traceback) or lost the Ctrl-C (the drop finished, exit 0); on
    this machine that window is about 10-30 ms into the import. Each moment across it must stop
    the command in one line, 130."""
    crm = GOLDEN.crm_files()[0]
    for delay_ms in range(0, 60, 4):
        env = {**os.environ, "PYTHONPATH": str(REPO), "LOCAL_DATA_DIR": str(tmp_path / f"d{delay_ms}")}
        child = subprocess.run(
            [sys.executable, "-c", _CTRL_C_INTO_DUCKDB_IMPORT, str(delay_ms / 1000), "crm-drop", str(crm)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        said = (delay_ms, child.returncode, child.stderr[-2000:])
        # The drop takes far longer than 60 ms after DuckDB starts to load: every Ctrl-C lands.
        assert child.returncode == EXIT_INTERRUPTED and "Traceback" not in child.stderr, said
        assert one_error_line(child.stderr).startswith("interrupted"), said


@pytest.mark.parametrize("command", [["report"], ["reconcile", "--date", DAYS[0], "--skip-api"]])
def test_ctrl_c_during_a_query_that_only_reads_exits_130(
    command: list[str],
    cli: Callable[..., tuple[int, str, str]],
    local_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seen in a sweep: `report` and `reconcile` ended with exit 70 and `error: RuntimeError: Query
    interrupted` when the Ctrl-C came during their first query (the schema check)."""
    assert cli("crm-drop", str(GOLDEN.crm_files()[0]))[0] == 0

    def interrupted(_self: DuckDbWarehouse) -> None:
        raise RuntimeError("Query interrupted")  # what DuckDB raises when it takes SIGINT

    monkeypatch.setattr(DuckDbWarehouse, "check_schema", interrupted)
    code, out, err = cli(*command)
    assert code == EXIT_INTERRUPTED, (out, err)
    assert one_error_line(err).startswith("interrupted"), err


def test_ctrl_c_while_the_modules_load_prints_no_traceback(local_env: Path) -> None:
    """`-X importtime` writes a line as each module is loaded: the signal is sent once the
    command line's own modules have started to load, well before `main` runs."""
    for attempt in range(3):
        child = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "shared.cli", "status"],
            cwd=REPO,
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stderr is not None
        seen: list[str] = []
        for line in child.stderr:
            seen.append(line)
            if "shared.config" in line or "shared.domain" in line:
                child.send_signal(signal.SIGINT)
                break
        rest = child.stderr.read()
        child.wait(timeout=30)
        said = [line for line in rest.splitlines() if not line.startswith("import time:")]
        assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest[-2000:]
        if child.returncode == EXIT_INTERRUPTED:
            assert said == ["interrupted before anything was done"], said
            return
        assert child.returncode == 0, (attempt, said)  # it finished first: try again
    pytest.fail("the signal never landed while the modules loaded")


def test_serve_starts_nothing_queued_once_it_is_stopping(pipeline: LocalPipeline, monkeypatch: Any) -> None:
    started, release = threading.Event(), threading.Event()
    delivered: list[str] = []
    host = pipeline.host
    real = host._deliver

    def slow(envelope: Any, report: Any) -> None:
        delivered.append(envelope.message_id)
        started.set()
        release.wait(60)  # bounds, reached only by a failure: a busy machine is slow, not 10 s stuck
        real(envelope, report)

    monkeypatch.setattr(host, "_deliver", slow)
    body = {"kind": "pending", "date": DAYS[0], "run_id": "t"}
    pipeline.services.bus.send(
        names.TRANSFORM_QUEUE, [OutgoingMessage(body=body, message_id=f"wake-{n}") for n in range(5)]
    )
    server = LocalServer(pipeline, port=0).start()
    assert started.wait(60)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    while not server._stop.is_set():
        pass
    release.set()
    stopper.join(30)
    assert delivered == ["wake-0"]
    assert pipeline.host.bus.depth(names.TRANSFORM_QUEUE) == 4


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_serve_says_how_it_stops_on_every_stop_signal(local_env: Path, children: Children, stop: int) -> None:
    """Found by the fresh-clone review: `kill` (SIGTERM) stopped serve with no word at all."""
    with socket.socket() as probe:  # a free port, given back before serve binds it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = children.start([sys.executable, "-m", "shared.cli", "serve", "--port", str(port)])
    server.line("serving ")
    server.send_signal(stop)
    code, out, err = server.finish()
    assert code == 0, err
    assert "stopping: finishing the message being delivered (at most" in out
    assert out.rstrip().endswith("stopped")
    assert "Traceback" not in err


def test_a_second_stop_while_the_first_is_said_is_ignored_and_the_handlers_come_back() -> None:
    # The chaos test once saw a second signal land inside the first one's handler: a traceback.
    # And a handler left ignoring would be inherited by every child started later.
    from shared.local.stop_signals import stopping_already

    before = signal.getsignal(signal.SIGINT)
    with stopping_already():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt here
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_while_init_db_upgrades_exits_130_in_one_line_and_keeps_version_one(
    cli: Callable[..., tuple[int, str, str]], local_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.adapters.test_warehouse_schema import big_version_one_file, interrupted_upgrade, recorded

    local_env.mkdir(parents=True)
    path = local_env / "warehouse.duckdb"
    big_version_one_file(path)
    with interrupted_upgrade(monkeypatch):
        code, out, err = cli("init-db")
    assert (code, out) == (EXIT_INTERRUPTED, "")
    assert err == "interrupted; nothing staged or built is lost\n"
    assert recorded(path) == [(1,)]


def test_a_read_only_command_on_a_version_one_warehouse_says_what_upgrades_it(
    cli: Callable[..., tuple[int, str, str]], local_env: Path, tmp_path: Path
) -> None:
    from tests.adapters.test_warehouse_schema import recorded, version_one_file

    assert cli("crm-drop", str(GOLDEN.crm_files()[0]))[0] == 0  # a ledger, for reconcile
    path = local_env / "warehouse.duckdb"
    path.unlink()
    version_one_file(path)
    upgrades = (
        f"error: the warehouse {path} has schema version 1, this app needs schema version 2:"
        " `python -m shared.cli init-db` (or the next `run` or `rebuild`) upgrades it in place, keeping every row\n"
    )
    assert cli("report", "--out", str(tmp_path / "r.html"))[1:] == ("", upgrades)
    assert cli("reconcile", "--date", "2026-10-01", "--skip-api")[1:] == ("", upgrades)
    assert recorded(path) == [(1,)]
