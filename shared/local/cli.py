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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

from shared.config import Settings, SettingsError
from shared.domain import names
from shared.domain.blob_names import UnsafeBlobName, check_blob_name
from shared.domain.days import parse_day
from shared.domain.wording import agreeing, counted
from shared.local.errors import ArgumentMistake, CliError, DiskFull, disk_full, user_interrupt
from shared.local.folder_lock import FolderBusy, FolderLock
from shared.local.status_view import crm_table, day_line, day_problem, file_line, status_table
from shared.local.stop_signals import stopping_already
from shared.observability.logs import configure_logging
from shared.observability.redact import RedactingWriter, printable, redact
from shared.ports import SchemaVersionMismatch, WarehouseUnavailable

if TYPE_CHECKING:  # the function host (azure.functions, DuckDB) is loaded by the commands that run it
    from shared.domain.health import HealthReport
    from shared.local.host import DrainReport
    from shared.local.pipeline import LocalPipeline
    from shared.local.stop_signals import StopSignals

log = logging.getLogger(__name__)

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a reader that went away (128 + SIGPIPE)
EXIT_INTERNAL = 70
EXIT_USAGE = 2  # a mistaken argument or setting
EXIT_COULD_NOT_TELL = 2  # reconcile: the API could not be asked, or the question was wrong
# A fetch the API asked to wait for longer than USAGE_API_MAX_WAIT_S: nothing failed, the fetch
# is scheduled for later (EX_TEMPFAIL of sysexits.h: try again later).
EXIT_FETCH_SCHEDULED = 75


class Folder(Enum):
    """What a command does with LOCAL_DATA_DIR."""

    LOCKS = "locks"  # works on it: creates it and takes its lock (`serve` lets go while idle)
    WRITES = "writes"  # creates it and writes beside the others, without the lock
    # Only reads: never creates it (a mistyped LOCAL_DATA_DIR is said, not made) and works on a
    # folder it may not write (a copy to inspect).
    READS = "reads"
    # Reads the settings as far as they are valid and probes the folder itself, its lock taken
    # only when free (health: a bad setting, or a folder that is not one, is what it reports).
    PROBES = "probes"


class Pipeline(Enum):
    """Whether a command opens the local pipeline (function host, ledger, bus, warehouse)."""

    NONE = "none"
    WRITES = "writes"
    # The ledger and the warehouse opened read-only, the bus not journaled: it runs while a
    # `run` waits on the API, and a warehouse another program has open is its one line.
    READS = "reads"


@dataclass(frozen=True)
class Call:
    """One command as invoked: its arguments and settings, the folder lock it holds and the
    pipeline it opened (each when its table entry says so)."""

    args: argparse.Namespace
    settings: Settings
    lock: FolderLock | None = None
    opened: LocalPipeline | None = None

    @property
    def pipeline(self) -> LocalPipeline:
        if self.opened is None:  # a handler whose table entry opens no pipeline
            raise RuntimeError(f"{self.args.command} opens no pipeline")
        return self.opened


Precondition = Callable[[argparse.Namespace, Settings], int | None]
Check = Callable[[argparse.Namespace, Settings], None]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _no_mistake(args: argparse.Namespace) -> str | None:
    return None


@dataclass(frozen=True)
class Command:
    """Everything that decides what one command may do. The parser, the folder lock, the
    checks, the dispatch and the exit status are all derived from COMMANDS."""

    name: str
    help: str
    handler: Callable[[Call], int]
    arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    epilog: str | None = None
    folder: Folder = Folder.LOCKS
    pipeline: Pipeline = Pipeline.NONE
    # An argument mistake argparse cannot see (exit 2, like its own).
    argument_mistake: Callable[[argparse.Namespace], str | None] = _no_mistake
    # Before LOCAL_DATA_DIR is made or locked: a mistake in the question (CliError) or nothing
    # to do (an exit status, its line printed); either way nothing is created.
    before: tuple[Precondition, ...] = ()
    # Once the folder is taken, before the pipeline opens: a CliError is said as any failure.
    checks: tuple[Check, ...] = ()
    failure_exit: int = 1
    resumable: bool = False  # interrupted, it resumes when run again
    shows_demo_key: bool = False  # it prints the demo's key for the user to export: public


def _finish(
    pipeline: LocalPipeline,
    report: DrainReport,
    days: Sequence[date],
    file: dict[str, Any] | None = None,
    since: str | None = None,
) -> int:
    problems, later = [], []
    for day in days:
        view = pipeline.status(day.isoformat())
        print(printable(day_line(view, since)))  # one line, whatever a file name holds
        problems += [p for p in [day_problem(view)] if p]
        # A fetch the API asked to wait for (a long Retry-After): what it waits for.
        later += [w for w in [str((view.get("fetch") or {}).get("waiting_for") or "")] if w]
    if file and file.get("status") == "rejected":
        problems.append(f"CRM file {file.get('blob')} rejected: {file.get('reason')}")
    # The state says it best; alerts and dead letters only when the state shows no failure
    # (they also cover work the command triggered on other days).
    problems += _still_pending(pipeline, report)
    problems = problems or report.error_alerts() + report.dead_lettered
    from shared.services.status import days_under_other_rules

    if stale := days_under_other_rules(pipeline.services):  # this command built nothing that found them
        print(
            f"note: {counted(len(stale), 'day')} {agreeing(len(stale), 'was', 'were')} decided under other"
            " rules than those in force"
            f" ({pipeline.settings.rules().short()}); rebuild them with: python -m shared.cli rebuild"
        )
    if problems:
        more = f" (and {len(problems) - 1} more; see alerts)" if len(problems) > 1 else ""
        raise CliError(problems[0] + more)
    if later:
        more = f" (and {len(later) - 1} more days)" if len(later) > 1 else ""
        print(
            f"{later[0]}; the first command after that time (run, backfill, crm-drop) runs it{more}",
            file=sys.stderr,
        )
        return EXIT_FETCH_SCHEDULED
    return 0


def _pending_builds(waiting: list[date]) -> str:
    """`1 day still has a build pending`, `3 days still have ...`."""
    return f"{counted(len(waiting), 'day')} still {agreeing(len(waiting), 'has', 'have')} a build pending"


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
    # A day is settled as failed only when it did not fit in LOCAL_WAREHOUSE_MEMORY_MB.
    too_big = [e.data for e in entries if e.data.get("status") == "failed"]
    if too_big:  # held back under this cap: trying again as it is would fail the same way
        return [
            f"{_pending_builds(waiting)} ({shown}): {too_big[0].get('reason')};"
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
        f"{_pending_builds(waiting)} ({shown}): {why};"
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
    """The parser, one sub-command per entry of COMMANDS, in its order."""
    parser = _Parser(prog="python -m shared.cli", description="Company Activity, locally.")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print the log on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.arguments(sub.add_parser(command.name, help=command.help, epilog=command.epilog))
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
    command = COMMANDS[args.command]
    if mistake := command.argument_mistake(args):
        parser.error(mistake)  # an argument mistake: exit 2
    secrets = Settings.secret_values()
    if command.shows_demo_key:  # it prints the demo's key for the user to export: public
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
    `status` says interrupted), instead of the process vanishing mid-way. One stop is enough:
    a second signal while the first is being handled is ignored, so the giving back and the
    one line are never cut short by a traceback."""
    previous: dict[signal.Signals, Any] = {}
    stopping = threading.Event()
    if (
        command in ("run", "backfill", "crm-drop", "rebuild", "init-db")
        and threading.current_thread() is threading.main_thread()
    ):

        def interrupt(_signum: int, _frame: Any) -> None:
            if not stopping.is_set():
                stopping.set()
                raise KeyboardInterrupt

        stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {stop: signal.signal(stop, interrupt) for stop in stops}
    try:
        yield  # while the stop unwinds (a fetch letting go), later signals do nothing
    finally:
        for stop, handler in previous.items():
            if handler is not None:
                signal.signal(stop, handler)


def _main_interrupted(args: argparse.Namespace) -> int:
    try:
        with _stopped_like_ctrl_c(args.command):
            return _main(args)
    except KeyboardInterrupt:
        with stopping_already():
            # A terminal may be in the middle of a progress line; a log file is not.
            start = "\n" if sys.stderr.isatty() else ""
            if not _working.is_set():
                print(f"{start}interrupted before anything was done", file=sys.stderr)
                return EXIT_INTERRUPTED
            resume = " run the same command again to resume;" if COMMANDS[args.command].resumable else ""
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
    command = COMMANDS[args.command]
    if command.folder is Folder.PROBES:  # a bad setting, or a folder that is not one, is what it says
        return command.handler(Call(args, Settings.read_env()[0]))
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        readable = _settings_to_read(exc) if args.command == "status" else exc
        if isinstance(readable, SettingsError):
            print(f"error: {readable}", file=sys.stderr)
            return 2
        settings = readable
    try:
        if (done := _before_the_folder(command, args, settings)) is not None:
            return done
        writable = _check_data_folder(settings.local_data_dir, create=command.folder is not Folder.READS)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _exit_for(command, exc)
    _start_logging(settings, writable, verbose=args.verbose)
    return _settled(command, Call(args, settings), writable)


def _exit_for(command: Command, exc: Exception) -> int:
    """A mistaken argument exits 2 (as argparse's refusals); any other failure, the command's."""
    return EXIT_USAGE if isinstance(exc, ArgumentMistake) else command.failure_exit


def _before_the_folder(command: Command, args: argparse.Namespace, settings: Settings) -> int | None:
    """What is said before LOCAL_DATA_DIR is made or locked: a folder no command can use, then
    the command's own preconditions. A number: the command ends with it (its line printed)."""
    folder = settings.local_data_dir
    if folder.exists() and not folder.is_dir():
        raise CliError(f"LOCAL_DATA_DIR {folder} is a file, not a folder")
    if _under_a_file(folder):  # a folder no command can make, said by every one
        raise CliError(f"LOCAL_DATA_DIR {folder} cannot be created: {os.strerror(errno.ENOTDIR)}")
    for precondition in command.before:
        if (done := precondition(args, settings)) is not None:
            return done
    return None


def _start_logging(settings: Settings, writable: bool, *, verbose: bool) -> None:
    """The log goes to LOCAL_DATA_DIR/pipeline.log; stderr stays for the one-line reason (or -v)."""
    global _log_file
    _log_file = settings.local_data_dir / "pipeline.log" if writable else None
    configure_logging(settings, level=logging.INFO, log_file=_log_file, to_stderr=verbose)
    # A log that cannot be written (a full disk) loses the record, never prints a traceback.
    logging.raiseExceptions = False


def _settled(command: Command, call: Call, writable: bool) -> int:
    """The command run, and whatever it raised turned into its line and exit status."""
    settings = call.settings
    try:
        return _in_the_folder(command, call, writable)
    except DiskFull as exc:
        return _disk_full(settings, exc)
    except SettingsError as exc:  # one found only when its piece is built (a connection string)
        print(f"error: {printable(redact(str(exc), settings.secrets()))}", file=sys.stderr)
        return EXIT_USAGE
    except (CliError, WarehouseUnavailable, SchemaVersionMismatch) as exc:
        print(f"error: {printable(redact(str(exc), settings.secrets()))}", file=sys.stderr)
        return _exit_for(command, exc)
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk (or /dev/full) took no more output
            _quiet_stdout()
            print(f"error: cannot write: {exc.strerror}", file=sys.stderr)
            return 1
        return _unforeseen(call.args, settings, exc)
    except Exception as exc:  # a failure we did not foresee: one line here, the traceback in the log
        if user_interrupt(exc):  # DuckDB's words for a Ctrl-C during a query that only reads
            raise KeyboardInterrupt from None
        if disk_full(exc):
            return _disk_full(settings, exc)
        return _unforeseen(call.args, settings, exc)


def _in_the_folder(command: Command, call: Call, writable: bool) -> int:
    if command.folder is Folder.LOCKS and writable:  # nobody writes a read-only folder
        with FolderLock(call.settings.local_data_dir, _command_line(call.args)) as lock:
            _working.set()
            return _run(command, dataclasses.replace(call, lock=lock))
    _working.set()
    return _run(command, call)


def _run(command: Command, call: Call) -> int:
    """The command's checks, then its handler, on the pipeline it opens (closed after)."""
    for check in command.checks:
        check(call.args, call.settings)
    if command.pipeline is Pipeline.NONE:
        return command.handler(call)
    from shared.local.pipeline import LocalPipeline

    pipeline = LocalPipeline(call.settings, read_only=command.pipeline is Pipeline.READS)
    try:
        return command.handler(dataclasses.replace(call, opened=pipeline))
    finally:
        pipeline.close()


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
    if (why := _unwritable(folder)) is None:
        return True
    if not create:
        return False
    raise CliError(f"LOCAL_DATA_DIR {folder} is not writable ({why}); point it at a folder you can write")


def _unwritable(folder: Path) -> str | None:
    """Why this user cannot write in `folder` (a read-only mount, permissions), or None. A file
    written and removed: access() misses what only a write shows."""
    probe = folder / f".write-check-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or exc.__class__.__name__
    return None


def _check_days(args: argparse.Namespace, settings: Settings) -> None:
    """The replay's own rules (only finished days, not before 1970, at most 93), said before
    anything else is asked for."""
    from shared.domain.replay_request import BadReplayRequest, ReplayRequest

    if args.command == "backfill":
        body = {"from": args.first.isoformat(), "to": args.last.isoformat()}
    elif args.date is not None:
        body = {"date": args.date.isoformat()}
    else:
        return  # the daily run: the timer's days, none asked for
    try:
        ReplayRequest.parse(body, datetime.now(UTC).date())
    except BadReplayRequest as exc:
        raise ArgumentMistake(str(exc)) from None


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


def _daily_never_forces(args: argparse.Namespace, settings: Settings) -> None:
    if args.date is None and args.force:
        raise ArgumentMistake("--force needs --date: the daily run (run without --date) never forces")


def _needs_the_api(args: argparse.Namespace, settings: Settings) -> None:
    if not settings.usage_api_base_url:
        raise CliError(
            "USAGE_API_BASE_URL is not set; start the built-in API with `python -m shared.cli simulator`"
            " and set the URL it prints"
        )


def _run_days(call: Call) -> int:
    """`run`: one day through the replay, or (without --date) what the daily timer does."""
    args, pipeline = call.args, call.pipeline
    started = datetime.now(UTC).isoformat()
    if args.date is None:
        with _retries_shown():
            report, yesterday, lookback = pipeline.daily()
        # The lookback's days (re-checked, or fetched: never fetched or failed), then yesterday.
        return _finish(pipeline, report, [*lookback, yesterday], since=started)
    with _retries_shown():
        report = pipeline.replay({"date": args.date.isoformat(), "force": args.force})
    return _finish(pipeline, report, [args.date], since=started)


def _backfill(call: Call) -> int:
    args, pipeline = call.args, call.pipeline
    started = datetime.now(UTC).isoformat()
    body = {"from": args.first.isoformat(), "to": args.last.isoformat(), "force": args.force}
    with _retries_shown():
        report = pipeline.replay(body, progress=True)
    days = [date.fromisoformat(d) for d in _days(args.first, args.last)]
    return _finish(pipeline, report, days, since=started)


def _crm_drop(call: Call) -> int:
    from shared.services.status import crm_file_status

    args, pipeline = call.args, call.pipeline
    name = _drop_name(args)
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


def _drop_name(args: argparse.Namespace) -> str:
    """The blob name the file is dropped as, if the contract allows it."""
    name: str = args.name or args.file.name
    try:
        check_blob_name(names.CRM_CONTAINER, name)
    except UnsafeBlobName as exc:
        raise CliError(f"{exc}; give --name a plain file name such as companies_2026-11-20.csv") from None
    return name


def _report(call: Call) -> int:
    from shared.local.report import write_report

    out = call.args.out or call.settings.local_data_dir / "report.html"
    try:
        path = write_report(call.pipeline.services, out)
    except FileNotFoundError:
        raise CliError(f"cannot write the report to {out}: no folder {out.parent}") from None
    except OSError as exc:
        raise CliError(f"cannot write the report to {out}: {exc.strerror}") from None
    print(f"report written to {path}")
    return 0


def _rebuild(call: Call) -> int:
    from shared.services.pending import pending_days
    from shared.services.status import days_under_other_rules

    pipeline, settings = call.pipeline, call.settings
    started = datetime.now(UTC).isoformat()
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
        f"rebuilt {counted(len(built), 'day')} (asked: {len(stale)} decided under other rules,"
        f" {len(waiting)} with a build pending), under {settings.rules().short()}"
    )
    return _finish(pipeline, report, [])


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


def _nothing_built_yet(args: argparse.Namespace, settings: Settings) -> int | None:
    if _has_ledger(settings):
        return None
    print(f"nothing built yet in {settings.local_data_dir}. {_FIRST_STEPS}")  # and nothing made
    return 0


def _nothing_to_report(args: argparse.Namespace, settings: Settings) -> int | None:
    if _has_warehouse(settings):
        return None
    print(f"nothing to report yet: {settings.local_data_dir} holds no warehouse. {_FIRST_STEPS}")
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


def _check_reconcile_question(args: argparse.Namespace, settings: Settings) -> None:
    """GET /api/reconcile's own rules, asked before anything is opened."""
    from shared.domain.reconcile_request import BadReconcileRequest, ReconcileRequest

    try:
        ReconcileRequest.parse(_reconcile_params(args), datetime.now(UTC).date())
    except BadReconcileRequest as exc:
        raise CliError(str(exc)) from None


def _nothing_to_reconcile(args: argparse.Namespace, settings: Settings) -> None:
    if not (_has_warehouse(settings) and _has_ledger(settings)):
        raise CliError(
            f"nothing to reconcile yet: {settings.local_data_dir} holds no pipeline data. {_FIRST_STEPS}"
        )


def _reconcile(call: Call) -> int:
    """Through the real GET /api/reconcile handler; exit 0 when everything agrees, 1 when
    something differs, 2 when it cannot tell."""
    from shared.local.reconcile_view import reconcile_text

    pipeline, args = call.pipeline, call.args
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


def _health(args: argparse.Namespace, settings: Settings) -> int:
    """The checks GET /api/health runs, on the pieces the local pipeline runs on. Exit 0 when
    every check passes, 1 when one fails.

    It takes no folder lock (a long backfill must not hold it back) and creates nothing: its
    probes use names nothing else reads (the ledger's `health` entry, a blob in the `health`
    container); a warehouse another process holds is its check's one line; a LOCAL_DATA_DIR
    that does not exist yet is a note, one that cannot exist a failing check. An invalid
    setting fails `settings` and the checks it concerns; the others run on the valid ones."""
    from shared.bootstrap import build_services
    from shared.services.health import check_health

    folder = settings.local_data_dir
    global _log_file
    unwritable = _unwritable(folder) if folder.is_dir() else None
    writable = folder.is_dir() and unwritable is None
    _log_file = folder / "pipeline.log" if writable else None
    configure_logging(settings, level=logging.INFO, log_file=_log_file, to_stderr=args.verbose)
    built: list[Any] = []

    def load() -> Any:
        if unwritable:  # as every other command says it, not as a failure to open the ledger
            raise SettingsError(f"LOCAL_DATA_DIR {folder} is not writable ({unwritable})")
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
            f"stopped with {counted(queued, 'message')} still queued; they are kept in {pipeline.settings.local_data_dir}"
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
                f"Product Usage API simulator at {api.base_url}: {counted(world.companies, 'company', 'companies')},"
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
    from shared.adapters.warehouse_sql import SCHEMA_VERSIONS
    from shared.bootstrap import make_warehouse

    warehouse = make_warehouse(settings)
    try:
        warehouse.apply_schema()
    finally:
        warehouse.close()
    where = settings.sql_server or ("SQL_CONNECTION_STRING" if settings.sql_connection_string else None)
    print(
        f"schema version {SCHEMA_VERSIONS[warehouse.dialect]} applied ({warehouse.dialect}) to {where or settings.local_warehouse_file}"
    )
    return 0


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=_parse_day)
    parser.add_argument("--force", action="store_true", help="re-fetch and override quality-gate errors")


def _backfill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="first", type=_parse_day, required=True)
    parser.add_argument("--to", dest="last", type=_parse_day, required=True)
    parser.add_argument("--force", action="store_true")


def _backfill_range(args: argparse.Namespace) -> str | None:
    return f"--to {args.last} is before --from {args.first}" if args.last < args.first else None


def _crm_drop_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path)
    parser.add_argument("--name", help="blob name (default: the file's name)")
    parser.add_argument(
        "--force", action="store_true", help="stage it even if its company count fell by more than half"
    )


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=_parse_day)
    parser.add_argument("--json", action="store_true")


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="where (default: LOCAL_DATA_DIR/report.html)")


def _reconcile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=_parse_day, required=True)
    parser.add_argument("--company", help="one company_id: every number of its row explained")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--skip-api", action="store_true", help="compare only what is stored (the API is not asked)"
    )


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=_whole_number(1, 65535), default=7071)


def _health_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the JSON GET /api/health answers")
    parser.add_argument("--send-test-alert", action="store_true", help="also deliver a test alert")


def _simulator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=_whole_number(0, 65535), default=8000, help="0: any free port")
    parser.add_argument("--companies", type=_whole_number(1, 1_000_000), default=60)
    parser.add_argument("--days", type=_whole_number(1, 366), default=21, help="days up to yesterday")


def _demo(call: Call) -> int:
    from shared.local.demo import run_demo

    return run_demo(call.settings)


# Every command, in the order `--help` lists them: what each may do is read from here alone.
COMMANDS: Mapping[str, Command] = MappingProxyType(
    {
        command.name: command
        for command in (
            Command(
                "run",
                help="fetch, stage and build one day; without --date what the daily timer does (yesterday,"
                " and the USAGE_API_LOOKBACK_DAYS days before it re-checked against the API)",
                epilog="exit status: 0 everything finished, 1 something failed, 75 a fetch is scheduled for"
                " later because the API asked to wait longer than USAGE_API_MAX_WAIT_S (the line says when)",
                handler=_run_days,
                arguments=_run_arguments,
                pipeline=Pipeline.WRITES,
                # What is wrong with the days comes before what is missing to fetch them.
                checks=(_daily_never_forces, _check_days, _needs_the_api),
                resumable=True,
            ),
            Command(
                "backfill",
                help="run a range of days",
                handler=_backfill,
                arguments=_backfill_arguments,
                pipeline=Pipeline.WRITES,
                argument_mistake=_backfill_range,
                checks=(_check_days, _needs_the_api),
                resumable=True,
            ),
            Command(
                "crm-drop",
                help="drop a CRM snapshot CSV into the crm-drop container",
                handler=_crm_drop,
                arguments=_crm_drop_arguments,
                pipeline=Pipeline.WRITES,
            ),
            Command(
                "status",
                help="what the ledger knows per day",
                handler=lambda call: _status(call.settings, call.args.date, as_json=call.args.json),
                arguments=_status_arguments,
                folder=Folder.READS,  # only the ledger, read-only: it runs beside any command
            ),
            Command(
                "demo",
                help="run the whole pipeline on a built-in API simulator",
                handler=_demo,
                resumable=True,
            ),
            Command(
                "rebuild",
                help="rebuild every day decided under rules other than those in force, and every pending one",
                handler=_rebuild,
                pipeline=Pipeline.WRITES,
                before=(_nothing_built_yet,),
            ),
            Command(
                "init-db",
                help="apply sql/<dialect>/schema.sql to the configured warehouse",
                handler=lambda call: init_db(call.settings),
            ),
            Command(
                "report",
                help="write one self-contained HTML report of the table",
                handler=_report,
                arguments=_report_arguments,
                folder=Folder.WRITES,  # report.html, beside a command that holds the folder
                pipeline=Pipeline.READS,
                before=(_nothing_to_report,),
            ),
            Command(
                "reconcile",
                help="a day (or one company) across the API, the landed pages, staging and the table",
                epilog="exit status: 0 everything agrees, 1 something differs (each difference explained),"
                " 2 could not tell (the API could not be asked, or a mistake in the question)",
                handler=_reconcile,
                arguments=_reconcile_arguments,
                folder=Folder.READS,
                pipeline=Pipeline.READS,
                # What is wrong with the question comes first.
                before=(_check_reconcile_question, _nothing_to_reconcile),
                # Like diff: 0 the same, 1 different, 2 could not tell (a mistake included).
                failure_exit=EXIT_COULD_NOT_TELL,
            ),
            Command(
                "serve",
                help="the replay, status, reconcile and health routes on http://127.0.0.1:PORT/api/",
                handler=lambda call: _serve(call.pipeline, call.args.port, call.lock),
                arguments=_serve_arguments,
                pipeline=Pipeline.WRITES,
            ),
            Command(
                "health",
                help="check every piece the pipeline depends on, as GET /api/health does",
                epilog="exit status: 0 every check passes, 1 one fails (its line says what to fix)",
                handler=lambda call: _health(call.args, call.settings),
                arguments=_health_arguments,
                folder=Folder.PROBES,
            ),
            Command(
                "simulator",
                help="start the built-in Product Usage API on its own",
                handler=lambda call: _simulator(call.args.port, call.args.companies, call.args.days),
                arguments=_simulator_arguments,
                folder=Folder.WRITES,  # only its log: it touches no pipeline data
                shows_demo_key=True,
            ),
        )
    }
)


if __name__ == "__main__":
    sys.exit(main())
