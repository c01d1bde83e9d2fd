"""Local command line (contract section 6). Every command goes through the real function handlers.

python -m shared.cli run --date YYYY-MM-DD [--force]
python -m shared.cli run          (what the daily timer does: yesterday, and the lookback re-checks)
python -m shared.cli backfill --from YYYY-MM-DD --to YYYY-MM-DD [--force]
python -m shared.cli crm-drop FILE [--name BLOB_NAME] [--force]
python -m shared.cli status [--date YYYY-MM-DD] [--json]
python -m shared.cli demo
python -m shared.cli simulator [--port N] [--companies N] [--days N]
python -m shared.cli reconcile --date YYYY-MM-DD [--company ID] [--json] [--skip-api]
python -m shared.cli health [--json] [--send-test-alert]

Every mistake a user can make ends in one line on stderr and a non-zero exit, never a
traceback: the details of an unexpected failure go to LOCAL_DATA_DIR/pipeline.log.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

from shared.config import Settings, SettingsError
from shared.domain import names
from shared.domain.blob_names import UnsafeBlobName, check_blob_name
from shared.domain.days import parse_day
from shared.local.errors import CliError, DiskFull, disk_full
from shared.local.folder_lock import FolderBusy, FolderLock
from shared.local.status_view import crm_table, day_line, day_problem, file_line, status_table
from shared.observability.logs import configure_logging
from shared.observability.redact import RedactingWriter, printable, redact
from shared.ports import SchemaVersionMismatch, WarehouseUnavailable

if TYPE_CHECKING:  # the function host (azure.functions, DuckDB) is loaded by the commands that run it
    from shared.domain.health import HealthReport
    from shared.local.host import DrainReport
    from shared.local.pipeline import LocalPipeline
    from shared.local.stop_signals import StopSignals

log = logging.getLogger(__name__)

# Commands that work on LOCAL_DATA_DIR and so take its lock; `status` only reads the ledger,
# `simulator` touches nothing. `serve` lets go of it whenever its queues are empty. `report`
# and `reconcile` only read (the ledger and the warehouse opened read-only, the bus not
# journaled): they run while a `run` waits on the API, and a warehouse another program has
# open is their one line.
LOCKING_COMMANDS = frozenset({"run", "backfill", "crm-drop", "demo", "init-db", "rebuild", "serve"})
READ_ONLY_COMMANDS = frozenset({"report", "reconcile"})
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a reader that went away (128 + SIGPIPE)
EXIT_INTERNAL = 70
EXIT_COULD_NOT_TELL = 2  # reconcile: the API could not be asked, or the question was wrong
# A fetch the API asked to wait for longer than USAGE_API_MAX_WAIT_S: nothing failed, the fetch
# is scheduled for later (EX_TEMPFAIL of sysexits.h: try again later).
EXIT_FETCH_SCHEDULED = 75


def _finish(
    pipeline: LocalPipeline,
    report: DrainReport,
    days: Sequence[date],
    file: dict[str, Any] | None = None,
    since: str | None = None,
) -> int:
    problems = []
    for day in days:
        view = pipeline.status(day.isoformat())
        print(printable(day_line(view, since)))  # one line, whatever a file name holds
        problems += [p for p in [day_problem(view)] if p]
    if file and file.get("status") == "rejected":
        problems.append(f"CRM file {file.get('blob')} rejected: {file.get('reason')}")
    # The state says it best; alerts and dead letters only when the state shows no failure
    # (they also cover work the command triggered on other days).
    problems += _still_pending(pipeline, report)
    problems = problems or report.error_alerts() + report.dead_lettered
    from shared.services.status import days_under_other_rules

    if stale := days_under_other_rules(pipeline.services):  # this command built nothing that found them
        print(
            f"note: {len(stale)} days were decided under other rules than those in force"
            f" ({pipeline.settings.rules().short()}); rebuild them with: python -m shared.cli rebuild"
        )
    if problems:
        more = f" (and {len(problems) - 1} more; see alerts)" if len(problems) > 1 else ""
        raise CliError(problems[0] + more)
    later = [f for d in days if (f := _scheduled_fetch(pipeline, d))]
    if later:
        more = f" (and {len(later) - 1} more days)" if len(later) > 1 else ""
        print(
            f"{later[0]}; the first command after that time (run, backfill, crm-drop) runs it{more}",
            file=sys.stderr,
        )
        return EXIT_FETCH_SCHEDULED
    return 0


def _scheduled_fetch(pipeline: LocalPipeline, day: date) -> str | None:
    """What the fetch of `day` is waiting for, when the API asked for a long wait (Retry-After)."""
    entry = pipeline.services.ledger.get(names.FETCH, day.isoformat())
    return str(entry.data["waiting_for"]) if entry and entry.data.get("waiting_for") else None


def _still_pending(pipeline: LocalPipeline, report: DrainReport) -> list[str]:
    """Days the transform still owes once the queues are empty: a command never exits 0 while
    one is pending. The line says which and why (the transform's last failure, or the lease)."""
    from shared.services import build_lease
    from shared.services.pending import pending_days

    entries = pipeline.services.ledger.query(names.DAYS)
    waiting = sorted(pending_days(entries))
    if not waiting:
        return []
    shown = ", ".join(d.isoformat() for d in waiting[:3]) + (" ..." if len(waiting) > 3 else "")
    too_big = [
        e.data for e in entries if e.data.get("status") == "failed" and "memory" in str(e.data.get("reason"))
    ]
    if too_big:  # held back under this cap: trying again as it is would fail the same way
        return [
            f"{len(waiting)} days still have a build pending ({shown}): {too_big[0].get('reason')};"
            " raise LOCAL_WAREHOUSE_MEMORY_MB, then: python -m shared.cli rebuild"
        ]
    failed = [f for f in report.dead_lettered if f.startswith(f"{names.TRANSFORM_QUEUE}:")]
    failed += [f for f in report.failures if f.startswith("transform_days:")]
    failed += [a for a in report.error_alerts() if a.startswith("transform:")]  # settled: out of memory
    if failed:
        why = failed[-1]
    elif holder := build_lease.holder_of(pipeline.services):
        why = f"another transform holds the build lease ({holder})"
    else:
        why = "the transform did not build them"
    return [
        f"{len(waiting)} days still have a build pending ({shown}): {why};"
        " the next command tries again (or: python -m shared.cli rebuild)"
    ]


def _parse_day(text: str) -> date:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _whole_number(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text[:40]!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line like every other error (its usage runs to three)."""

    def error(self, message: str) -> NoReturn:
        # Control characters typed into an argument would break the line (or the terminal).
        shown = printable(message)
        if "unrecognized arguments:" in message and any(v in message.split() for v in ("-v", "--verbose")):
            shown += "; -v goes before the command: python -m shared.cli -v <command>"
        self.exit(2, f"error: {shown} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m shared.cli", description="Company Activity, locally.")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print the log on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="fetch, stage and build one day; without --date what the daily timer does (yesterday,"
        " and the USAGE_API_LOOKBACK_DAYS days before it re-checked against the API)",
        epilog="exit status: 0 everything finished, 1 something failed, 75 a fetch is scheduled for"
        " later because the API asked to wait longer than USAGE_API_MAX_WAIT_S (the line says when)",
    )
    run.add_argument("--date", type=_parse_day)
    run.add_argument("--force", action="store_true", help="re-fetch and override quality-gate errors")
    backfill = sub.add_parser("backfill", help="run a range of days")
    backfill.add_argument("--from", dest="first", type=_parse_day, required=True)
    backfill.add_argument("--to", dest="last", type=_parse_day, required=True)
    backfill.add_argument("--force", action="store_true")
    drop = sub.add_parser("crm-drop", help="drop a CRM snapshot CSV into the crm-drop container")
    drop.add_argument("file", type=Path)
    drop.add_argument("--name", help="blob name (default: the file's name)")
    drop.add_argument(
        "--force", action="store_true", help="stage it even if its company count fell by more than half"
    )
    status = sub.add_parser("status", help="what the ledger knows per day")
    status.add_argument("--date", type=_parse_day)
    status.add_argument("--json", action="store_true")
    sub.add_parser("demo", help="run the whole pipeline on a built-in API simulator")
    sub.add_parser(
        "rebuild",
        help="rebuild every day decided under rules other than those in force, and every pending one",
    )
    sub.add_parser("init-db", help="apply sql/<dialect>/schema.sql to the configured warehouse")
    report = sub.add_parser("report", help="write one self-contained HTML report of the table")
    report.add_argument("--out", type=Path, help="where (default: LOCAL_DATA_DIR/report.html)")
    reconcile = sub.add_parser(
        "reconcile",
        help="a day (or one company) across the API, the landed pages, staging and the table",
        epilog="exit status: 0 everything agrees, 1 something differs (each difference explained),"
        " 2 could not tell (the API could not be asked, or a mistake in the question)",
    )
    reconcile.add_argument("--date", type=_parse_day, required=True)
    reconcile.add_argument("--company", help="one company_id: every number of its row explained")
    reconcile.add_argument("--json", action="store_true")
    reconcile.add_argument(
        "--skip-api", action="store_true", help="compare only what is stored (the API is not asked)"
    )
    serve = sub.add_parser(
        "serve", help="the replay, status, reconcile and health routes on http://127.0.0.1:PORT/api/"
    )
    serve.add_argument("--port", type=_whole_number(1, 65535), default=7071)
    health = sub.add_parser(
        "health",
        help="check every piece the pipeline depends on, as GET /api/health does",
        epilog="exit status: 0 every check passes, 1 one fails (its line says what to fix)",
    )
    health.add_argument("--json", action="store_true", help="print the JSON GET /api/health answers")
    health.add_argument("--send-test-alert", action="store_true", help="also deliver a test alert")
    simulator = sub.add_parser("simulator", help="start the built-in Product Usage API on its own")
    simulator.add_argument("--port", type=_whole_number(0, 65535), default=8000, help="0: any free port")
    simulator.add_argument("--companies", type=_whole_number(1, 1_000_000), default=60)
    simulator.add_argument("--days", type=_whole_number(1, 366), default=21, help="days up to yesterday")
    return parser


# Set once the command has the folder and starts working: Ctrl-C while it waits for another
# command has nothing to resume.
_working = threading.Event()
_log_file: Path | None = None  # where this command logs (None: a folder it may only read)


def main(argv: Sequence[str] | None = None) -> int:
    _working.clear()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("interrupted before anything was done", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.command == "backfill" and args.last < args.first:
        parser.error(f"--to {args.last} is before --from {args.first}")  # an argument mistake: exit 2
    secrets = Settings.secret_values()
    if args.command == "simulator":  # it prints the demo's key for the user to export: public
        from shared.local.demo import DEMO_KEY

        secrets = [s for s in secrets if s != DEMO_KEY]
    with _redacted_output(secrets):
        return _main_interrupted(args)


@contextmanager
def _redacted_output(secrets: list[str]) -> Iterator[None]:
    """Everything printed goes through the redaction (the secrets as set, valid or not) and
    shows terminal control characters escaped, whichever code prints it."""
    real = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingWriter(real[0], secrets), RedactingWriter(real[1], secrets)
    try:
        yield
    finally:
        for wrapper in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):  # a reader that went away, a closed stream
                wrapper.flush()
        sys.stdout, sys.stderr = real


@contextmanager
def _stopped_like_ctrl_c(command: str) -> Iterator[None]:
    """`kill` (SIGTERM) and a closed terminal (SIGHUP) stop a command that fetches or builds as
    Ctrl-C does: what it was doing is given back and said (a fetch lets go of its claim, so
    `status` says interrupted), instead of the process vanishing mid-way."""
    previous: dict[signal.Signals, Any] = {}
    if (
        command in ("run", "backfill", "crm-drop", "rebuild")
        and threading.current_thread() is threading.main_thread()
    ):

        def interrupt(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt

        previous = {stop: signal.signal(stop, interrupt) for stop in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            if handler is not None:
                signal.signal(stop, handler)


def _main_interrupted(args: argparse.Namespace) -> int:
    try:
        with _stopped_like_ctrl_c(args.command):
            return _main(args)
    except KeyboardInterrupt:
        # A terminal may be in the middle of a progress line; a log file is not.
        start = "\n" if sys.stderr.isatty() else ""
        if not _working.is_set():
            print(f"{start}interrupted before anything was done", file=sys.stderr)
            return EXIT_INTERRUPTED
        resume = (
            " run the same command again to resume;" if args.command in ("run", "backfill", "demo") else ""
        )
        print(f"{start}interrupted;{resume} nothing staged or built is lost", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()  # `status --json | head`: the reader left, so say nothing more
        return EXIT_BROKEN_PIPE


# What `status` needs to be right: where the data is, and the rules it names as in force.
STATUS_SETTINGS = frozenset(
    {"LOCAL_DATA_DIR", "CHURN_MIN_ROLLING_USERS", "CHURN_MAX_CONTACT_AGE_DAYS", "CRM_MAX_SNAPSHOT_AGE_DAYS"}
)


def _settings_to_read(error: SettingsError) -> Settings | SettingsError:
    """`status` only reads: an invalid setting it does not use (USAGE_API_LOOKBACK_DAYS=99) is
    one warning line, not a refusal; what is wrong with one it uses is returned, to refuse."""
    settings, problems = Settings.read_env()
    needed = [problem for name, problem in problems.items() if name in STATUS_SETTINGS]
    if needed or not problems:
        return needed[0] if needed else error
    said = "; ".join(str(p).removeprefix("setting ") for p in problems.values())
    print(
        f"warning: {said}; status shows what is stored, the other commands refuse until it is fixed",
        file=sys.stderr,
    )
    return settings


def _main(args: argparse.Namespace) -> int:
    if args.command == "health":  # a bad setting, or a folder that is not one, is what it says
        return _health(args)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        readable = _settings_to_read(exc) if args.command == "status" else exc
        if isinstance(readable, SettingsError):
            print(f"error: {readable}", file=sys.stderr)
            return 2
        settings = readable
    # `status` and `reconcile` only read: they work on a folder they may not write (a copy to
    # inspect) and never create one (a mistyped LOCAL_DATA_DIR is said, not made).
    reads_only = args.command in ("status", "reconcile")
    # reconcile exits like diff: 0 the same, 1 different, 2 could not tell (a mistake included).
    failed = EXIT_COULD_NOT_TELL if args.command == "reconcile" else 1
    if settings.local_data_dir.exists() and not settings.local_data_dir.is_dir():
        print(f"error: LOCAL_DATA_DIR {settings.local_data_dir} is a file, not a folder", file=sys.stderr)
        return failed
    if _under_a_file(settings.local_data_dir):  # a folder no command can make, said by every one
        print(
            f"error: LOCAL_DATA_DIR {settings.local_data_dir} cannot be created: {os.strerror(errno.ENOTDIR)}",
            file=sys.stderr,
        )
        return failed
    if args.command == "reconcile":
        try:
            _check_reconcile_question(args)  # what is wrong with the question comes first
        except CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return failed
    if args.command == "rebuild" and not _has_ledger(settings):  # nothing built: make nothing
        print(f"nothing built yet in {settings.local_data_dir}. {_FIRST_STEPS}")
        return 0
    if args.command == "report" and not _has_warehouse(settings):  # nothing to report: make nothing
        print(f"nothing to report yet: {settings.local_data_dir} holds no warehouse. {_FIRST_STEPS}")
        return 0
    if args.command == "reconcile" and not (_has_warehouse(settings) and _has_ledger(settings)):
        print(
            f"error: nothing to reconcile yet: {settings.local_data_dir} holds no pipeline data. {_FIRST_STEPS}",
            file=sys.stderr,
        )
        return failed
    try:
        writable = _check_data_folder(settings.local_data_dir, create=not reads_only)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return failed
    # The log goes to LOCAL_DATA_DIR/pipeline.log; stderr stays for the one-line reason (or -v).
    global _log_file
    _log_file = settings.local_data_dir / "pipeline.log" if writable else None
    configure_logging(settings, level=logging.INFO, log_file=_log_file, to_stderr=args.verbose)
    # A log that cannot be written (a full disk) loses the record, never prints a traceback.
    logging.raiseExceptions = False
    try:
        if args.command in LOCKING_COMMANDS and writable:  # nobody writes a read-only folder
            with FolderLock(settings.local_data_dir, _command_line(args)) as lock:
                _working.set()
                return _run(args, settings, lock)
        _working.set()
        return _run(args, settings, None)
    except DiskFull as exc:
        return _disk_full(settings, exc)
    except (CliError, WarehouseUnavailable, SchemaVersionMismatch) as exc:
        print(f"error: {printable(redact(str(exc), settings.secrets()))}", file=sys.stderr)
        return failed
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk (or /dev/full) took no more output
            _quiet_stdout()
            print(f"error: cannot write: {exc.strerror}", file=sys.stderr)
            return 1
        return _unforeseen(args, settings, exc)
    except Exception as exc:  # a failure we did not foresee: one line here, the traceback in the log
        if disk_full(exc):
            return _disk_full(settings, exc)
        return _unforeseen(args, settings, exc)


def _disk_full(settings: Settings, exc: BaseException) -> int:
    """One line, exit 1, and nothing sent to the log: there is no room to write it."""
    _quiet_stdout()
    said = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:160]
    print(
        f"error: the disk holding {settings.local_data_dir} is full ({said}); free some space and run"
        " the command again: what was staged or built is kept, and the rest resumes",
        file=sys.stderr,
    )
    return 1


def _unforeseen(args: argparse.Namespace, settings: Settings, exc: Exception) -> int:
    """One line and exit 70; the redacted traceback goes to the log."""
    log.exception("%s failed", args.command)
    line = redact(f"{exc.__class__.__name__}: {exc}".splitlines()[0][:300], settings.secrets())
    details = f"details in {_log_file}" if _log_file else "run with -v for details"
    print(f"error: {line} ({details})", file=sys.stderr)
    return EXIT_INTERNAL


def _run(args: argparse.Namespace, settings: Settings, lock: FolderLock | None) -> int:
    if args.command == "demo":
        from shared.local.demo import run_demo

        return run_demo(settings)
    if args.command == "simulator":
        return _simulator(args.port, args.companies, args.days)
    return _dispatch(args, settings, lock)


def _under_a_file(folder: Path) -> bool:
    """Whether the path goes through a regular file (LOCAL_DATA_DIR=/etc/hostname/x): such a
    folder cannot exist, so a command that only reads must not say it is merely empty."""
    for parent in folder.parents:
        if parent.exists():  # the nearest that exists; below a file, none does
            return not parent.is_dir()
    return False


def _check_data_folder(folder: Path, *, create: bool = True) -> bool:
    """LOCAL_DATA_DIR must be a folder this user can write: say so now, in one line, rather than
    as a traceback from whichever file is opened first. Without `create` (a command that only
    reads) a missing or read-only folder is fine. Returns whether it is writable."""
    if not create and not folder.exists():
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CliError(f"LOCAL_DATA_DIR {folder} is a file, not a folder") from None
    except OSError as exc:
        raise CliError(f"LOCAL_DATA_DIR {folder} cannot be created: {exc.strerror}") from None
    if not folder.is_dir():
        raise CliError(f"LOCAL_DATA_DIR {folder} is not a folder")
    probe = folder / f".write-check-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if not create:
            return False
        raise CliError(
            f"LOCAL_DATA_DIR {folder} is not writable ({exc.strerror}); point it at a folder you can write"
        ) from None
    return True


def _check_days(args: argparse.Namespace) -> None:
    """The replay's own rules (only finished days, not before 1970, at most 93), said before
    anything else is asked for."""
    from shared.domain.replay_request import BadReplayRequest, ReplayRequest

    body = (
        {"date": args.date.isoformat()}
        if args.command == "run"
        else {"from": args.first.isoformat(), "to": args.last.isoformat()}
    )
    try:
        ReplayRequest.parse(body, datetime.now(UTC).date())
    except BadReplayRequest as exc:
        raise CliError(str(exc)) from None


def _open_drop(path: Path) -> BinaryIO:
    """The file to drop, opened for reading: it is streamed into the store, never held whole."""
    if path.is_dir():
        raise CliError(f"{path} is a folder, not a CSV file")
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise CliError(f"no such file: {path}") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


def _command_line(args: argparse.Namespace) -> str:
    """The command as the user typed it, for the line a waiting command prints."""
    return " ".join(sys.argv[1:]) if sys.argv[1:] and sys.argv[1:][0] == args.command else args.command


def _quiet_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush would fail again
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests)
        pass


def _dispatch(args: argparse.Namespace, settings: Settings, lock: FolderLock | None) -> int:
    if args.command == "init-db":
        return init_db(settings)
    if args.command == "run" and args.date is None and args.force:
        raise CliError("--force needs --date: the daily run (run without --date) never forces")
    if args.command == "backfill" or (args.command == "run" and args.date is not None):
        _check_days(args)  # what is wrong with the days comes before what is missing to fetch them
    if args.command in ("run", "backfill") and not settings.usage_api_base_url:
        raise CliError(
            "USAGE_API_BASE_URL is not set; start the built-in API with `python -m shared.cli simulator`"
            " and set the URL it prints"
        )
    if args.command == "status":
        return _status(settings, args.date, as_json=args.json)

    from shared.local.pipeline import LocalPipeline
    from shared.services.pending import pending_days
    from shared.services.status import crm_file_status, days_under_other_rules

    pipeline = LocalPipeline(settings, read_only=args.command in READ_ONLY_COMMANDS)
    try:
        started = datetime.now(UTC).isoformat()
        if args.command == "run" and args.date is None:
            with _retries_shown():
                report, yesterday, lookback = pipeline.daily()
            # The lookback's days (re-checked, or fetched: never fetched or failed), then yesterday.
            return _finish(pipeline, report, [*lookback, yesterday], since=started)
        if args.command == "run":
            with _retries_shown():
                report = pipeline.replay({"date": args.date.isoformat(), "force": args.force})
            return _finish(pipeline, report, [args.date], since=started)
        if args.command == "backfill":
            body = {"from": args.first.isoformat(), "to": args.last.isoformat(), "force": args.force}
            with _retries_shown():
                report = pipeline.replay(body, progress=True)
            days = [date.fromisoformat(d) for d in _days(args.first, args.last)]
            return _finish(pipeline, report, days, since=started)
        if args.command == "crm-drop":
            name = args.name or args.file.name
            try:
                check_blob_name(names.CRM_CONTAINER, name)
            except UnsafeBlobName as exc:
                raise CliError(
                    f"{exc}; give --name a plain file name such as companies_2026-11-20.csv"
                ) from None
            with _open_drop(args.file) as data:
                try:
                    report = pipeline.drop_crm(data, name, force=args.force)
                except UnsafeBlobName as exc:  # a name this store cannot hold (a segment too long)
                    raise CliError(f"{exc}; give --name a shorter plain file name") from None
                except (FileExistsError, NotADirectoryError, IsADirectoryError):
                    # Azure's flat names allow both x.csv and x.csv/y.csv; a folder store cannot.
                    raise CliError(
                        f"cannot drop as {names.CRM_CONTAINER}/{name}: a part of that name is already"
                        " used the other way (a file where a folder would be, or a folder where the file"
                        " would be); give --name another name"
                    ) from None
            file = crm_file_status(pipeline.services, name)
            print(printable(f"dropped {args.file} as {names.CRM_CONTAINER}/{name}: {file_line(file)}"))
            return _finish(pipeline, report, [], file)
        if args.command == "report":
            from shared.local.report import write_report

            out = args.out or settings.local_data_dir / "report.html"
            try:
                path = write_report(pipeline.services, out)
            except FileNotFoundError:
                raise CliError(f"cannot write the report to {out}: no folder {out.parent}") from None
            except OSError as exc:
                raise CliError(f"cannot write the report to {out}: {exc.strerror}") from None
            print(f"report written to {path}")
            return 0
        if args.command == "serve":
            return _serve(pipeline, args.port, lock)
        if args.command == "reconcile":
            return _reconcile(pipeline, args)
        if args.command == "rebuild":
            if not pipeline.services.ledger.query(names.DAYS):
                raise CliError("nothing built yet: run or backfill some days first")
            stale = days_under_other_rules(pipeline.services)
            waiting = pending_days(pipeline.services.ledger.query(names.DAYS))  # a transform never ran
            if not stale and not waiting:
                print(
                    "nothing to rebuild: every day was decided under the rules in force"
                    f" ({settings.rules().short()}) and no build is pending"
                )
                return 0
            report = pipeline.rebuild(f"rebuild-{datetime.now(UTC):%Y%m%dT%H%M%S}")
            built = _built_since(pipeline, started)
            print(
                f"rebuilt {len(built)} days (asked: {len(stale)} decided under other rules,"
                f" {len(waiting)} with a build pending), under {settings.rules().short()}"
            )
            return _finish(pipeline, report, [])
    finally:
        pipeline.close()
    raise CliError(f"unknown command {args.command}")


def _built_since(pipeline: LocalPipeline, since: str) -> list[str]:
    """The days whose rows were built (or, waiting, cleared) since `since` (ISO, UTC)."""
    return sorted(
        e.key
        for e in pipeline.services.ledger.query(names.DAYS)
        if str(e.data.get("built_at") or e.data.get("updated_at") or "") >= since
        and e.data.get("status") in ("built", "waiting")
    )


def _status(settings: Settings, day: date | None, *, as_json: bool) -> int:
    """The ledger's view, from the status service that GET /api/status answers with. Only the
    ledger is opened: no function host, no warehouse, no lock, so it runs beside any command."""
    from shared.bootstrap import make_ledger
    from shared.services.status import status_payload

    ledger: Any = _NoLedger()
    if _has_ledger(settings):
        ledger = make_ledger(settings, read_only=True)
    payload = status_payload(ledger, settings.rules(), day)
    if isinstance(ledger, _NoLedger) and not as_json:
        print(f"nothing here yet: {settings.local_data_dir} holds no pipeline data. {_FIRST_STEPS}")
        return 0
    if as_json:
        print(json.dumps(payload, indent=1, default=str))
        return 0
    print(status_table([payload] if day else payload["days"], settings.rules()))
    if not day:
        print(crm_table(payload.get("crm_snapshots", []), payload.get("crm_files", [])))
    return 0


def _has_ledger(settings: Settings) -> bool:
    return settings.uses_azure_storage() or (settings.local_data_dir / "ledger.sqlite3").exists()


def _has_warehouse(settings: Settings) -> bool:
    return (
        bool(settings.sql_connection_string or settings.sql_server) or settings.local_warehouse_file.exists()
    )


_FIRST_STEPS = (
    "Start with `make demo` (a simulated API, 21 days built), or `python -m shared.cli simulator`"
    " and, in another terminal, the `crm-drop` and `run` commands it prints."
)


class _NoLedger:
    """The ledger of a data folder that has none yet: `status` reads it without creating one."""

    def get(self, partition: str, key: str) -> None:
        return None

    def query(self, partition: str) -> list[Any]:
        return []


def _reconcile_params(args: argparse.Namespace) -> dict[str, str]:
    params = {"date": args.date.isoformat(), "api": "false" if args.skip_api else "true"}
    if args.company is not None:
        params["company_id"] = args.company
    return params


def _check_reconcile_question(args: argparse.Namespace) -> None:
    """GET /api/reconcile's own rules, asked before anything is opened."""
    from shared.domain.reconcile_request import BadReconcileRequest, ReconcileRequest

    try:
        ReconcileRequest.parse(_reconcile_params(args), datetime.now(UTC).date())
    except BadReconcileRequest as exc:
        raise CliError(str(exc)) from None


def _reconcile(pipeline: LocalPipeline, args: argparse.Namespace) -> int:
    """Through the real GET /api/reconcile handler; exit 0 when everything agrees, 1 when
    something differs, 2 when it cannot tell."""
    from shared.local.reconcile_view import reconcile_text

    response = pipeline.host.http("GET", "reconcile", params=_reconcile_params(args))
    payload = json.loads(response.get_body())
    if response.status_code != 200:
        raise CliError(payload.get("error", f"reconcile answered {response.status_code}"))
    print(json.dumps(payload, indent=1, default=str) if args.json else reconcile_text(payload))
    return {"agree": 0, "differ": 1}.get(payload["verdict"], EXIT_COULD_NOT_TELL)


class _RetryLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.name.endswith(".wait"):
            return  # told by _WaitLines
        print(f"\rretrying: {record.getMessage()[:200]}", file=sys.stderr, flush=True)


class _WaitLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        start = "\r" if sys.stderr.isatty() else ""
        print(f"{start}waiting: {record.getMessage()[:200]}", file=sys.stderr, flush=True)


@contextmanager
def _retries_shown() -> Iterator[None]:
    """Each wait the API asks for, as it starts (stderr, terminal or not: a fetch held by the
    API is not silence), and on a terminal each API retry as it happens."""
    waits, wait_lines = logging.getLogger("shared.adapters.usage_api_http.wait"), _WaitLines(logging.WARNING)
    waits.addHandler(wait_lines)
    source, handler = logging.getLogger("shared.adapters.usage_api_http"), _RetryLines(logging.WARNING)
    if sys.stderr.isatty():
        source.addHandler(handler)
    try:
        yield
    finally:
        source.removeHandler(handler)
        waits.removeHandler(wait_lines)


def _health(args: argparse.Namespace) -> int:
    """The checks GET /api/health runs, on the pieces the local pipeline runs on. Exit 0 when
    every check passes, 1 when one fails.

    It takes no folder lock (a long backfill must not hold it back) and creates nothing: its
    probes use names nothing else reads (the ledger's `health` entry, a blob in the `health`
    container); a warehouse another process holds is its check's one line; a LOCAL_DATA_DIR
    that does not exist yet is a note, one that cannot exist a failing check. An invalid
    setting fails `settings` and the checks it concerns; the others run on the valid ones."""
    from shared.bootstrap import build_services
    from shared.services.health import check_health

    settings, _ = Settings.read_env()
    folder = settings.local_data_dir
    global _log_file
    writable = folder.is_dir() and os.access(folder, os.W_OK)
    _log_file = folder / "pipeline.log" if writable else None
    configure_logging(settings, level=logging.INFO, log_file=_log_file, to_stderr=args.verbose)
    built: list[Any] = []

    def load() -> Any:
        # The in-process bus without its journal: health sends nothing, and must not replay
        # what another command journaled. Read-only where there is no folder: nothing is made.
        services = build_services(settings, local_bus=True, durable_bus=False, read_only=not folder.is_dir())
        built.append(services)
        return services

    # Never waits for the folder: taken when free, so no command starts writing mid-check;
    # when another command holds it, everything is checked but the DuckDB file, which that
    # command has open (DuckDB lets one program use it at a time, and health must not make a
    # backfill fail by opening it).
    lock = FolderLock(folder, _command_line(args)) if writable else None
    busy = ""
    try:
        if lock is not None:
            lock.acquire(wait=False)
    except FolderBusy:
        lock, busy = None, FolderLock(folder, "").holder()
    _working.set()
    try:
        result = check_health(
            _not_opening_warehouse(load, busy) if busy else load, send_test_alert=args.send_test_alert
        )
    finally:
        for services in built:
            for piece in (services.warehouse, services.bus):
                with contextlib.suppress(Exception):
                    piece.close()
        if lock is not None:
            lock.release()
    return _print_health(result, as_json=args.json)


def _not_opening_warehouse(load: Callable[[], Any], holder: str) -> Callable[[], Any]:
    """`load`, with a local warehouse that is not opened while `holder` works on the folder."""

    class Held:
        dialect = "duckdb"

        def probe(self) -> str:
            return f"not opened: {holder} is working on this folder and has the warehouse open; run health again when it finishes to check it"

        def close(self) -> None:
            pass

    def loading() -> Any:
        services = load()
        if services.warehouse.dialect != "duckdb":
            return services
        return dataclasses.replace(services, warehouse=Held())

    return loading


def _print_health(result: HealthReport, *, as_json: bool) -> int:
    print(json.dumps(result.to_json(), indent=1) if as_json else "\n".join(result.lines()))
    if not result.ok:
        first, *more = result.failing()
        more = [c for c in more if not c.detail.startswith("not checked")]
        also = f" (also failing: {', '.join(c.name for c in more)})" if more else ""
        print(f"error: {first.name}: {first.detail}{also}", file=sys.stderr)
    return result.exit_code


def _serve(pipeline: LocalPipeline, port: int, lock: FolderLock | None) -> int:
    from shared.local.stop_signals import StopSignals

    # Ctrl-C, kill and hangup alike, even if inherited ignored, from before the banner on: a stop
    # at any moment after it is answered with the stop lines below.
    with StopSignals() as stop:
        return _serve_until(pipeline, port, lock, stop)


def _serve_until(pipeline: LocalPipeline, port: int, lock: FolderLock | None, stop: StopSignals) -> int:
    from shared.local.server import STOP_WAIT_S, LocalServer

    if not pipeline.settings.usage_api_base_url:
        print(
            "note: USAGE_API_BASE_URL is not set: /api/replay will answer 503 (status works)", file=sys.stderr
        )
    try:
        server = LocalServer(pipeline, port=port, lock=lock).start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError(f"port {port} is in use; choose another with --port") from None
        raise CliError(f"cannot listen on port {port}: {exc.strerror}") from None
    print(
        f"serving {server.base_url}/api/replay (POST), {server.base_url}/api/status (GET),"
        f" {server.base_url}/api/reconcile (GET) and {server.base_url}/api/health (GET); Ctrl-C stops",
        flush=True,
    )
    try:
        stop.wait()
        print()
    finally:
        # Said before the wait, with its bound: the message being delivered is finished (a build
        # may take a while); nothing queued is started after this line.
        print(
            f"stopping: finishing the message being delivered (at most {STOP_WAIT_S} s);"
            " nothing queued is started",
            flush=True,
        )
        server.stop()
        bus = pipeline.services.bus
        queued = sum(bus.depth(q) for q in names.QUEUES) if hasattr(bus, "depth") else 0
    if queued:
        print(
            f"stopped with {queued} messages still queued; they are kept in {pipeline.settings.local_data_dir}"
            " and delivered by the next command (or serve)"
        )
    else:
        print("stopped")
    return 0


def _simulator(port: int, companies: int, days: int) -> int:
    """The demo's Product Usage API on its own, so `run`, `backfill` and `serve` can be tried."""
    from shared.local.demo import DEMO_KEY
    from shared.local.demo_world import DemoWorld
    from shared.local.simulator import UsageApiSimulator
    from shared.local.stop_signals import StopSignals

    # Ctrl-C, `kill` (SIGTERM) and a closed terminal (SIGHUP) are taken before anything is made
    # or printed: whenever one comes, the CRM folder does not outlive the simulator.
    with StopSignals() as stop:
        today = datetime.now(UTC).date()
        world = DemoWorld(first_day=today - timedelta(days=days), days=days, companies=companies)
        # Each day is made once and served from memory, not made again for every page.
        records = functools.lru_cache(maxsize=4)(world.usage_records)
        try:
            api = UsageApiSimulator(records, api_key=DEMO_KEY, port=port).start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CliError(
                    f"port {port} is in use; choose another with --port (0: any free port)"
                ) from None
            raise CliError(f"cannot listen on port {port}: {exc.strerror}") from None
        crm: Path | None = None
        try:
            # The world's CRM snapshots too: without one, every day fetched would wait for its snapshot.
            crm = Path(tempfile.mkdtemp(prefix="company-activity-crm-"))
            for day in world.snapshot_days():
                if stop.requested:  # a big world takes a while to write: stop now, not after
                    return 0
                (crm / world.crm_file_name(day)).write_bytes(world.crm_snapshot_csv(day))
            if stop.requested:
                return 0
            print(
                f"Product Usage API simulator at {api.base_url}: {world.companies} companies,"
                f" {world.first_day} to {world.last_day} (the demo's world); Ctrl-C stops\n"
                f"Its CRM snapshots are in {crm}/\n"
                f"In another terminal:\n"
                f"  export USAGE_API_BASE_URL={api.base_url} USAGE_API_KEY={DEMO_KEY}\n"
                f'  for f in {crm}/*.csv; do .venv/bin/python -m shared.cli crm-drop "$f"; done\n'
                f"  .venv/bin/python -m shared.cli run --date {world.last_day}\n"
                f"  .venv/bin/python -m shared.cli backfill --from {world.first_day} --to {world.last_day}",
                flush=True,
            )
            stop.wait()
            print()  # past the ^C a terminal shows
        finally:
            api.stop()
            if crm is not None:
                shutil.rmtree(crm, ignore_errors=True)
    return 0


def init_db(settings: Settings) -> int:
    """Create or upgrade the warehouse schema and record its version: Azure SQL when SQL_* is set
    (with an administrator's rights: the app's own user may not), else local DuckDB."""
    from shared.adapters.warehouse_sql import SCHEMA_VERSION
    from shared.bootstrap import make_warehouse

    warehouse = make_warehouse(settings)
    try:
        warehouse.apply_schema()
    finally:
        warehouse.close()
    where = settings.sql_server or ("SQL_CONNECTION_STRING" if settings.sql_connection_string else None)
    print(
        f"schema version {SCHEMA_VERSION} applied ({warehouse.dialect}) to {where or settings.local_warehouse_file}"
    )
    return 0


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


if __name__ == "__main__":
    sys.exit(main())
