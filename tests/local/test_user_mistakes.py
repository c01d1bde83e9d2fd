"""Every mistake a user can make on the command line: one line on stderr, a non-zero exit, and
nothing half-written (issue 11). Each test names what it checked to be intact."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.local.cli import EXIT_INTERRUPTED
from shared.local.folder_lock import FolderLock
from shared.local.host import LocalHost
from tests.processes import Child, Children
from tests.reference import Settings as RuleSettings
from tests.reference import diff_tables, expected_table
from tests.support import GOLDEN, REPO, one_error_line, read_alerts, read_table
from tests.test_reference import stage_golden

DAYS = sorted(GOLDEN.records())


def _nothing_written(data_dir: Path) -> None:
    """No blob, no ledger entry, no table row: the command was refused before it started."""
    blobs = data_dir / "blobs"
    assert not blobs.exists() or not [p for p in blobs.rglob("*") if p.is_file()]
    if (data_dir / "ledger.sqlite3").exists():
        import sqlite3

        with sqlite3.connect(data_dir / "ledger.sqlite3") as con:
            assert con.execute("SELECT COUNT(*) FROM entries").fetchone() == (0,)
    assert _table(data_dir) == []


def _table(data_dir: Path) -> list[dict]:
    """The analytics table; empty when the warehouse was never even opened."""
    return read_table(data_dir) if (data_dir / "warehouse.duckdb").exists() else []


# --- only finished days -----------------------------------------------------------------------


def test_today_is_refused_like_tomorrow(cli, local_env: Path, utc_today: date) -> None:
    # Before: a run of today was built and marked done with half a day in it, for good.
    today = utc_today
    for day in (today, today + timedelta(days=1)):
        code, _out, err = cli("run", "--date", day.isoformat())
        assert code == 2  # a mistaken argument, as README says
        assert "only finished UTC days can be run" in one_error_line(err)
    code, _out, err = cli(
        "backfill", "--from", (today - timedelta(days=2)).isoformat(), "--to", today.isoformat()
    )
    assert code == 2 and "is today" in one_error_line(err)
    code, _out, err = cli("backfill", "--from", "2000-01-01", "--to", (today - timedelta(days=1)).isoformat())
    assert code == 2 and "above the limit of 93" in one_error_line(err)
    code, _out, err = cli("run", "--force")
    assert code == 2 and "--force needs --date" in one_error_line(err)
    _nothing_written(local_env)


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CHURN_MIN_ROLLING_USERS", "-5"), ("CRM_MAX_SNAPSHOT_AGE_DAYS", "-3"), ("USAGE_API_TIMEOUT_S", "0")],
)
def test_a_setting_out_of_range_is_refused_before_anything_starts(
    cli, local_env: Path, monkeypatch, variable: str, value: str
) -> None:
    # Before: -5 and -3 were accepted (eight days flipped to waiting), and a timeout of 0 failed
    # five deliveries later inside requests while stdout said "built".
    monkeypatch.setenv(variable, value)
    code, out, err = cli("run", "--date", DAYS[0])
    assert code == 2 and out == ""
    assert one_error_line(err).startswith(f"error: setting {variable} must be")
    assert not local_env.exists()


def test_a_connection_string_that_is_not_one_is_a_settings_line(cli, local_env: Path, monkeypatch) -> None:
    # Before: "error: ValueError: Connection string missing required connection details.", exit 70
    # (an unforeseen error), though README says a bad setting exits 2.
    monkeypatch.setenv("DATA_STORAGE_CONNECTION", "AccountKey=abcdefghijklmnop")
    code, _out, err = cli("status")
    line = one_error_line(err)
    assert code == 2 and line.startswith("error: setting DATA_STORAGE_CONNECTION is not a storage connection")
    assert "abcdefghijklmnop" not in err


# --- the data folder --------------------------------------------------------------------------


def test_an_unusable_data_folder_isone_error_line(cli, tmp_path: Path, monkeypatch) -> None:
    # Before: even `status` died in a traceback, opening pipeline.log.
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    monkeypatch.setenv("LOCAL_DATA_DIR", str(a_file))
    code, _out, err = cli("status")
    assert code == 1 and "is a file, not a folder" in one_error_line(err)
    assert a_file.read_text() == "x"

    monkeypatch.setenv("LOCAL_DATA_DIR", "/proc/self/company-activity")  # not creatable, even by root
    code, _out, err = cli("crm-drop", str(GOLDEN.crm_files()[0]))
    assert code == 1 and "LOCAL_DATA_DIR /proc/self/company-activity cannot be created" in one_error_line(err)
    code, out, err = cli("status")  # status only reads: it says there is nothing, and makes nothing
    assert code == 0 and out.startswith("nothing here yet") and not err


@pytest.mark.parametrize(
    ("command", "failed"),
    [
        (("run", "--date", DAYS[0]), 1),
        (("status",), 1),
        (("reconcile", "--date", DAYS[0]), 2),
        (("rebuild",), 1),
    ],
)
def test_a_data_folder_under_a_file_is_said_alike_by_every_command(
    cli, tmp_path: Path, monkeypatch, command: tuple[str, ...], failed: int
) -> None:
    # Before: `run` said the folder cannot be created; `status` exited 0 saying nothing was there.
    a_file = tmp_path / "hostname"
    a_file.write_text("x")
    for folder in (a_file / "x", a_file / "x" / "y"):
        monkeypatch.setenv("LOCAL_DATA_DIR", str(folder))
        code, out, err = cli(*command)
        assert (code, out) == (failed, "")
        assert one_error_line(err) == f"error: LOCAL_DATA_DIR {folder} cannot be created: Not a directory"
    assert a_file.read_text() == "x"


def test_a_folder_that_cannot_be_written_isone_error_line(cli, monkeypatch) -> None:
    # /proc/self is a folder no one can create files in, root included (tests run as root here).
    monkeypatch.setenv("LOCAL_DATA_DIR", "/proc/self")
    code, _out, err = cli("crm-drop", str(GOLDEN.crm_files()[0]))
    assert code == 1
    assert one_error_line(err).startswith("error: LOCAL_DATA_DIR /proc/self is not writable (")


# --- the API ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("http://127.0.0.1:{closed}", "connection refused"),
        ("http://no-such-host.invalid", "DNS: the host name does not resolve"),
        ("https://127.0.0.1:{api}", "TLS failed"),
    ],
)
def test_an_unreachable_api_is_named_with_its_cause_and_fails_once(
    cli, local_env: Path, monkeypatch, api, url: str, cause: str, refused_port: int
) -> None:
    # Before: 6 attempts x 5 deliveries (170 s with the default backoff) ending in
    # "page 1: ... page 1: ConnectionError", never the URL or "connection refused".
    url = url.format(closed=refused_port, api=api.base_url.rsplit(":", 1)[1])
    monkeypatch.setenv("USAGE_API_BASE_URL", url)
    code, _out, err = cli("run", "--date", DAYS[0])
    line = one_error_line(err)
    assert code == 1
    assert f"usage API {url} cannot be reached: {cause}" in line, line
    assert "replay the day once it answers" in line
    fetch_alerts = [a for a in read_alerts(local_env) if a["kind"] == "fetch_failed"]
    assert len(fetch_alerts) == 1, "one delivery, one alert: not five deliveries and a dead letter"
    assert not [a for a in read_alerts(local_env) if a["kind"] == "dead_letter"]
    assert _table(local_env) == []


def test_an_api_that_never_answers_fails_within_the_unreachable_budget(
    cli, local_env: Path, monkeypatch
) -> None:
    """Before: connected but silent was an ordinary timeout, 6 attempts x 5 deliveries x 30 s
    (18 minutes), ending in a line without the URL."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("USAGE_API_BASE_URL", url)
        monkeypatch.setenv("USAGE_API_TIMEOUT_S", "0.2")
        monkeypatch.setenv("USAGE_API_UNREACHABLE_S", "1")
        code, _out, err = cli("backfill", "--from", DAYS[0], "--to", DAYS[2])
    line = one_error_line(err)
    assert code == 1
    assert f"usage API {url} cannot be reached: connected, but no answer within 0.2 s" in line, line
    alerts = [a for a in read_alerts(local_env) if a["kind"] == "fetch_failed"]
    assert len(alerts) == 3  # one per day; the second and third without trying again
    assert all(f"found while fetching {DAYS[0]}" in a["message"] for a in alerts[1:])
    assert not [a for a in read_alerts(local_env) if a["kind"] == "dead_letter"]


# --- the command line itself ------------------------------------------------------------------


def test_ctrl_c_in_a_backfill_says_how_to_resume_and_the_rerun_converges(
    cli, local_env: Path, monkeypatch
) -> None:
    for path in GOLDEN.crm_files():
        assert cli("crm-drop", str(path))[0] == 0
    deliver = LocalHost._deliver
    count = [0]

    def interrupted(self, envelope, report) -> None:  # type: ignore[no-untyped-def]
        count[0] += 1
        if count[0] == 9:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a handler
        deliver(self, envelope, report)

    monkeypatch.setattr(LocalHost, "_deliver", interrupted)
    code, _out, err = cli("backfill", "--from", DAYS[0], "--to", DAYS[-1])
    # Before: 95 lines of traceback and no word on what to do.
    assert code == 130
    assert (
        one_error_line(err)
        == "interrupted; run the same command again to resume; nothing staged or built is lost"
    )

    monkeypatch.setattr(LocalHost, "_deliver", deliver)
    code, _out, err = cli("backfill", "--from", DAYS[0], "--to", DAYS[-1])
    assert code == 0, err
    golden = stage_golden()
    assert diff_tables(read_table(local_env), expected_table(golden.usage, golden.snapshots)) == []


def test_status_json_into_a_closed_pipe_says_nothing(cli, local_env: Path) -> None:
    assert cli("backfill", "--from", DAYS[0], "--to", DAYS[-1])[0] in (0, 1)  # days wait: no CRM
    # The reader is gone long before the CLI has started up and writes: `true` reads nothing
    # and exits at once, as `head` does once it has its lines.
    shell = f"{sys.executable} -m shared.cli status --json | true"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=60,
    )
    # Before: BrokenPipeError and "Exception ignored ... BrokenPipeError" tracebacks.
    assert done.stderr == ""
    assert done.returncode == 141


def test_a_busy_port_isone_error_line(cli, local_env: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _out, err = cli("serve", "--port", str(port))
    assert code == 1 and one_error_line(err) == f"error: port {port} is in use; choose another with --port"


def test_an_unexpected_failure_is_one_line_and_the_traceback_goes_to_the_log(
    cli, local_env: Path, monkeypatch
) -> None:
    from shared.services import status

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(status, "status_payload", broken)
    local_env.mkdir(parents=True, exist_ok=True)
    code, _out, err = cli("status")
    assert code == 70
    assert (
        one_error_line(err) == f"error: RuntimeError: disk on fire (details in {local_env / 'pipeline.log'})"
    )
    assert "Traceback" in (local_env / "pipeline.log").read_text()


# --- two commands on one folder ---------------------------------------------------------------


def test_a_second_command_waits_for_the_first_and_says_which_holds_the_folder(
    local_env: Path, children: Children
) -> None:
    # Before: a 28-line DuckDB lock traceback.
    local_env.mkdir(parents=True)
    holder = FolderLock(local_env, "backfill --from 2026-10-01 --to 2026-10-10")
    holder.acquire()
    waiting = children.start([sys.executable, "-m", "shared.cli", "run", "--date", DAYS[0]])
    try:
        line = waiting.err_line("waiting for ")  # printed before it blocks; no timing involved
        assert line.startswith(
            f"waiting for `backfill --from 2026-10-01 --to 2026-10-10` (pid {os.getpid()}, since"
        )
        assert line.rstrip().endswith(f"to finish with {local_env} (Ctrl-C to give up)")
        assert waiting.process.poll() is None
    finally:
        holder.release()
    code, out, err = waiting.finish(timeout=120)
    assert code == 0, err
    assert "waiting" in out  # the day waits for its CRM snapshot: done, not failed
    assert "Traceback" not in err


def test_status_works_while_another_command_holds_the_folder(cli, local_env: Path) -> None:
    assert cli("run", "--date", DAYS[0])[0] == 0
    holder = FolderLock(local_env, "run --date 2026-10-02")
    holder.acquire()
    try:
        code, out, err = cli("status")
    finally:
        holder.release()
    assert code == 0, err
    assert DAYS[0] in out


# --- rules are part of each day's input --------------------------------------------------------


def _statuses(cli) -> list[dict]:
    code, out, err = cli("status", "--json")
    assert code == 0, err
    return json.loads(out)["days"]


def test_a_change_of_rules_rebuilds_every_day_so_the_table_is_never_mixed(
    cli, local_env: Path, monkeypatch
) -> None:
    golden = stage_golden()
    for path in GOLDEN.crm_files():
        assert cli("crm-drop", str(path))[0] == 0
    assert cli("backfill", "--from", DAYS[0], "--to", DAYS[-1])[0] == 0
    assert {json.dumps(d["days"]["rules"]) for d in _statuses(cli)} == {
        json.dumps(
            {"churn_min_rolling_users": 10, "churn_max_contact_age_days": 30, "crm_max_snapshot_age_days": 7}
        )
    }

    # Before: re-running one day rebuilt D..D+7 with 20 and every other day kept 10.
    monkeypatch.setenv("CHURN_MIN_ROLLING_USERS", "20")
    code, _out, err = cli("run", "--date", DAYS[-1], "--force")
    assert code == 0, err
    twenty = expected_table(golden.usage, golden.snapshots, RuleSettings(churn_min_rolling_users=20))
    assert diff_tables(read_table(local_env), twenty) == []
    assert expected_table(golden.usage, golden.snapshots) != twenty  # the rule change shows in the table
    assert {d["days"]["rules"]["churn_min_rolling_users"] for d in _statuses(cli)} == {20}
    code, out, _err = cli("status")
    assert "RULES" in out and "in force: 20/30/7" in out and "*" not in out.split("RULES:")[0]


def test_a_lower_snapshot_age_limit_empties_the_days_it_leaves_without_a_snapshot(
    cli, local_env: Path, monkeypatch
) -> None:
    golden = stage_golden()
    for path in GOLDEN.crm_files():
        assert cli("crm-drop", str(path))[0] == 0
    assert cli("backfill", "--from", DAYS[0], "--to", DAYS[-1])[0] == 0

    monkeypatch.setenv("CRM_MAX_SNAPSHOT_AGE_DAYS", "0")
    code, out, _err = cli("status")
    assert code == 0 and "rebuild them" not in out and "python -m shared.cli rebuild" in out
    code, out, err = cli("rebuild")
    assert code == 0, err
    same_day_only = RuleSettings(crm_max_snapshot_age_days=0)
    expected = expected_table(golden.usage, golden.snapshots, same_day_only)
    assert len(expected) < len(expected_table(golden.usage, golden.snapshots))
    assert diff_tables(read_table(local_env), expected) == []
    states = {d["date"]: d["days"]["status"] for d in _statuses(cli)}
    built = {str(r["activity_date"]) for r in expected}
    assert {d for d, s in states.items() if s == "built"} == built
    assert {d for d, s in states.items() if s == "waiting"} == set(DAYS) - built


# --- after the demo: an API to try run and backfill against --------------------------------------


def _simulator_command(children: Children, tmp: Path, *, companies: int, days: int, **popen: Any) -> Child:
    """`python -m shared.cli simulator` on a free port, its temporary folders made in `tmp` (so
    a test sees exactly what it leaves), its output read line by line as it comes."""
    tmp.mkdir(exist_ok=True)
    return children.start(
        [
            sys.executable,
            "-m",
            "shared.cli",
            "simulator",
            "--port",
            "0",
            "--companies",
            str(companies),
            "--days",
            str(days),
        ],
        env={**os.environ, "TMPDIR": str(tmp)},
        **popen,
    )


def _crm_folders(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("company-activity-crm-*"))


def test_the_simulator_command_serves_the_demo_world_for_run_and_backfill(
    local_env: Path, children: Children, tmp_path: Path, utc_today: date
) -> None:
    simulator = _simulator_command(children, tmp_path / "tmp", companies=12, days=3)
    try:
        first = simulator.line("Product Usage API simulator at ")
        assert first.startswith("Product Usage API simulator at http://127.0.0.1:"), first
        url = first.split(" at ", 1)[1].split(":", 2)
        base_url = ":".join(url[:2]) + ":" + url[2].split(":", 1)[0]
        yesterday = (utc_today - timedelta(days=1)).isoformat()
        env = {**os.environ, "USAGE_API_BASE_URL": base_url, "USAGE_API_KEY": "demo-key"}
        run = subprocess.run(
            [sys.executable, "-m", "shared.cli", "run", "--date", yesterday],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert f"{yesterday}  waiting" in run.stdout  # 12 companies' usage staged; no CRM dropped yet
        assert "(drop one: python -m shared.cli crm-drop FILE)" in run.stdout
        # The simulator wrote its world's snapshots and printed where: dropping them builds the day.
        crm = simulator.line("Its CRM snapshots are in ")
        folder = Path(crm.removeprefix("Its CRM snapshots are in ").strip())
        for snapshot in sorted(folder.glob("*.csv")):
            drop = subprocess.run(
                [sys.executable, "-m", "shared.cli", "crm-drop", str(snapshot)],
                cwd=REPO,
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            assert drop.returncode == 0, drop.stderr
        status = subprocess.run(
            [sys.executable, "-m", "shared.cli", "status", "--date", yesterday, "--json"],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert json.loads(status.stdout)["days"]["status"] == "built"
    finally:
        simulator.send_signal(signal.SIGINT)  # Ctrl-C
        code, _out, err = simulator.finish()
    assert code == 0 and "Traceback" not in err
    assert _crm_folders(tmp_path / "tmp") == []


def test_a_terminal_sees_each_retry_of_an_unreachable_api(cli, monkeypatch, refused_port: int) -> None:
    # Before: 170 s of silence.
    url = f"http://127.0.0.1:{refused_port}"
    monkeypatch.setenv("USAGE_API_BASE_URL", url)
    monkeypatch.setenv("USAGE_API_MAX_ATTEMPTS", "3")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _out, err = cli("run", "--date", DAYS[0])
    assert code == 1 and "Traceback" not in err
    retries = [line.strip() for line in err.splitlines() if line.strip().startswith("retrying:")]
    assert [r.split("; retry ")[1].split(" in ")[0] for r in retries] == ["1 of 2", "2 of 2"]
    assert retries[0].startswith(f"retrying: usage API {url}, {DAYS[0]} page 1: connection refused")


def test_a_report_that_cannot_be_written_isone_error_line(cli) -> None:
    # Found by the CLI fuzz: a traceback-worthy OSError (exit 70) for a user's bad path.
    assert cli("crm-drop", str(GOLDEN.crm_files()[0]))[0] == 0  # something to report
    code, _out, err = cli("report", "--out", "/proc/self/report.html")
    assert code == 1
    assert one_error_line(err).startswith("error: cannot write the report to /proc/self/report.html: ")


def test_a_control_character_in_an_argument_stays_onone_error_line(cli, capsys) -> None:
    # Found by the CLI fuzz: argparse echoed a raw record separator, which splits the line.
    with pytest.raises(SystemExit) as refused:
        cli("run", "--date", "2026-10-01", "\x1e")
    assert refused.value.code == 2
    assert one_error_line(capsys.readouterr().err) == (
        "error: unrecognized arguments: \\x1e (see: python -m shared.cli --help)"
    )


# --- the warehouse file --------------------------------------------------------------------------


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_warehouse_file_that_is_not_duckdb_is_one_line_and_loses_no_page(cli, local_env: Path) -> None:
    """The run opens the warehouse while the fetch waits on the API (in a thread of its own):
    a file it cannot open is said once, by the staging that needs it, not as a thread's
    traceback, and the landed pages stay for a run once the file is moved away."""
    for path in GOLDEN.crm_files():
        assert cli("crm-drop", str(path))[0] == 0
    (local_env / "warehouse.duckdb").rename(local_env / "kept.duckdb")
    (local_env / "warehouse.duckdb").write_bytes(b"not a database, a note someone saved here\n" * 100)
    day = DAYS[0]
    code, _out, err = cli("run", "--date", day)
    assert code == 1
    assert "warehouse.duckdb" in one_error_line(err) or "DuckDB" in one_error_line(err), err
    pages = list((local_env / "blobs" / "raw" / "usage" / day).rglob("page-*.json"))
    assert pages, "the fetch landed nothing"
    (local_env / "warehouse.duckdb").rename(local_env / "note.txt")
    (local_env / "kept.duckdb").rename(local_env / "warehouse.duckdb")
    code, out, err = cli("run", "--date", day)
    assert code in (0, 1) and "Traceback" not in err, (out, err)
    assert {r["activity_date"].isoformat() for r in _table(local_env)} == {day}


STOPS = pytest.mark.parametrize(
    "stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["ctrl-c", "kill", "hangup"]
)


@STOPS
def test_a_stopped_simulator_takes_its_crm_folder_with_it(
    local_env: Path, children: Children, tmp_path: Path, stop: signal.Signals
) -> None:
    """Ctrl-C, `kill` and a closed terminal all stop the simulator the same way: its temporary
    CRM snapshots are removed, with no traceback."""
    simulator = _simulator_command(children, tmp_path / "tmp", companies=5, days=2)
    line = simulator.line("Its CRM snapshots are in ")
    folder = Path(line.removeprefix("Its CRM snapshots are in ").strip())
    assert folder.is_dir() and list(folder.glob("*.csv")), line
    simulator.send_signal(stop)
    code, _out, err = simulator.finish()
    assert code == 0 and "Traceback" not in err, err
    assert not folder.exists()
    assert _crm_folders(tmp_path / "tmp") == []


@STOPS
def test_a_simulator_stopped_as_it_starts_leaves_nothing_behind(
    local_env: Path, children: Children, tmp_path: Path, stop: signal.Signals
) -> None:
    """Before: a stop between the banner and the handlers exited 130 or -15 and left the CRM
    folder in /tmp (5 of 10 tries). Sent the moment the process exists, a stop lands anywhere
    from the interpreter's start-up to the wait. Before the command's first line of Python
    nothing can answer it (the process dies of it; Python's Ctrl-C stops its start-up, exit 1,
    or the command's imports, 130) but nothing is made yet either; from then on it stops cleanly (0). Either way it ends,
    says nothing once it has said anything, and leaves no folder."""
    simulator = _simulator_command(children, tmp_path / "tmp", companies=5, days=2)
    simulator.send_signal(stop)
    code, out, err = simulator.finish()
    assert _crm_folders(tmp_path / "tmp") == []
    if code != 0:  # stopped before the command began: it made and printed nothing
        interpreter_start = code == 1 and err.startswith("Fatal Python error: init_import_site")
        assert code in (-stop, EXIT_INTERRUPTED) or interpreter_start, (code, err)
        assert out == "", out
    else:
        assert "Traceback" not in err, err


def test_ctrl_c_stops_a_simulator_started_with_ctrl_c_ignored(
    local_env: Path, children: Children, tmp_path: Path
) -> None:
    """A shell without job control (`cmd &` in a script or a Makefile) starts its background
    commands with SIGINT ignored. Before: the simulator kept that, so its Ctrl-C was lost and
    two started by a test run were still running 83 minutes later."""

    def ignore_ctrl_c() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    simulator = _simulator_command(children, tmp_path / "tmp", companies=5, days=2, preexec_fn=ignore_ctrl_c)
    simulator.line("Its CRM snapshots are in ")
    simulator.send_signal(signal.SIGINT)
    code, _out, err = simulator.finish()
    assert code == 0 and "Traceback" not in err, err
    assert _crm_folders(tmp_path / "tmp") == []


@STOPS
@pytest.mark.parametrize("when", ["starting-the-api", "writing-the-crm-folder"])
def test_a_stop_while_the_simulator_sets_up_removes_what_it_made(
    tmp_path: Path, capsys, monkeypatch, stop: signal.Signals, when: str
) -> None:
    """The window a process can hit only by chance, hit every time: the signal is sent (to this
    process) from inside the set-up. It stops there, prints nothing, removes the CRM folder and
    puts the handlers back."""
    from shared.local import cli
    from shared.local.demo_world import DemoWorld
    from shared.local.simulator import UsageApiSimulator

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    target, name = (
        (UsageApiSimulator, "start") if when == "starting-the-api" else (DemoWorld, "crm_snapshot_csv")
    )
    original = getattr(target, name)

    def signalled(self: Any, *args: Any) -> Any:
        os.kill(os.getpid(), stop)
        return original(self, *args)

    monkeypatch.setattr(target, name, signalled)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    assert cli._simulator(0, 5, 2) == 0
    assert capsys.readouterr().out == ""
    assert _crm_folders(tmp_path) == []
    assert {s: signal.getsignal(s) for s in before} == before
