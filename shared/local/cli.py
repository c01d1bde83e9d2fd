"""Local command line (contract section 6). Every command goes through the real function handlers.

python -m shared.cli run --date YYYY-MM-DD [--force]
python -m shared.cli backfill --from YYYY-MM-DD --to YYYY-MM-DD [--force]
python -m shared.cli crm-drop FILE [--name BLOB_NAME]
python -m shared.cli status [--date YYYY-MM-DD] [--json]
python -m shared.cli demo
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.domain import names
from shared.domain.days import parse_day
from shared.local.host import DrainReport
from shared.local.pipeline import CliError, LocalPipeline
from shared.local.status_view import day_line, day_problem, file_line, status_table
from shared.observability.logs import configure_logging
from shared.observability.redact import redact
from shared.services.status import crm_file_status


def _finish(
    pipeline: LocalPipeline, report: DrainReport, days: Sequence[date], file: dict[str, Any] | None = None
) -> int:
    problems = []
    for day in days:
        view = pipeline.status(day.isoformat())
        print(day_line(view))
        problems += [p for p in [day_problem(view)] if p]
    if file and file.get("status") == "rejected":
        problems.append(f"CRM file {file.get('blob')} rejected: {file.get('reason')}")
    # The state says it best; alerts and dead letters only when the state shows no failure
    # (they also cover work the command triggered on other days).
    problems = problems or report.error_alerts() + report.dead_lettered
    if problems:
        more = f" (and {len(problems) - 1} more; see alerts)" if len(problems) > 1 else ""
        raise CliError(problems[0] + more)
    return 0


def _parse_day(text: str) -> date:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.cli", description="Company Activity, locally.")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print the log on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fetch, stage and build one day")
    run.add_argument("--date", type=_parse_day, required=True)
    run.add_argument("--force", action="store_true", help="re-fetch and override quality-gate errors")
    backfill = sub.add_parser("backfill", help="run a range of days")
    backfill.add_argument("--from", dest="first", type=_parse_day, required=True)
    backfill.add_argument("--to", dest="last", type=_parse_day, required=True)
    backfill.add_argument("--force", action="store_true")
    drop = sub.add_parser("crm-drop", help="drop a CRM snapshot CSV into the crm-drop container")
    drop.add_argument("file", type=Path)
    drop.add_argument("--name", help="blob name (default: the file's name)")
    status = sub.add_parser("status", help="what the ledger knows per day")
    status.add_argument("--date", type=_parse_day)
    status.add_argument("--json", action="store_true")
    sub.add_parser("demo", help="run the whole pipeline on a built-in API simulator")
    sub.add_parser("init-db", help="apply sql/<dialect>/schema.sql to the configured warehouse")
    report = sub.add_parser("report", help="write one self-contained HTML report of the table")
    report.add_argument("--out", type=Path, help="where (default: LOCAL_DATA_DIR/report.html)")
    serve = sub.add_parser("serve", help="the replay and status routes on http://127.0.0.1:PORT/api/")
    serve.add_argument("--port", type=int, default=7071)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # The log goes to LOCAL_DATA_DIR/pipeline.log; stderr stays for the one-line reason (or -v).
    configure_logging(
        settings,
        level=logging.INFO,
        log_file=settings.local_data_dir / "pipeline.log",
        to_stderr=args.verbose,
    )
    try:
        if args.command == "demo":
            from shared.local.demo import run_demo

            return run_demo(settings)
        return _dispatch(args, settings)
    except CliError as exc:
        print(f"error: {redact(str(exc), settings.secrets())}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "init-db":
        return init_db(settings)
    if args.command in ("run", "backfill") and not settings.usage_api_base_url:
        raise CliError("USAGE_API_BASE_URL is not set (make demo runs against a built-in simulator)")
    pipeline = LocalPipeline(settings)
    try:
        if args.command == "run":
            report = pipeline.replay({"date": args.date.isoformat(), "force": args.force})
            return _finish(pipeline, report, [args.date])
        if args.command == "backfill":
            body = {"from": args.first.isoformat(), "to": args.last.isoformat(), "force": args.force}
            report = pipeline.replay(body, progress=True)
            days = [date.fromisoformat(d) for d in _days(args.first, args.last)]
            return _finish(pipeline, report, days)
        if args.command == "crm-drop":
            if not args.file.is_file():
                raise CliError(f"no such file: {args.file}")
            name = args.name or args.file.name
            report = pipeline.drop_crm(args.file.read_bytes(), name)
            file = crm_file_status(pipeline.services, name)
            print(f"dropped {args.file} as {names.CRM_CONTAINER}/{name}: {file_line(file)}")
            return _finish(pipeline, report, [], file)
        if args.command == "report":
            from shared.local.report import write_report

            path = write_report(pipeline.services, args.out or settings.local_data_dir / "report.html")
            print(f"report written to {path}")
            return 0
        if args.command == "serve":
            return _serve(pipeline, args.port)
        if args.command == "status":
            payload = pipeline.status(args.date.isoformat() if args.date else None)
            if args.json:
                print(json.dumps(payload, indent=1, default=str))
            else:
                print(status_table([payload] if args.date else payload["days"]))
            return 0
    finally:
        pipeline.close()
    raise CliError(f"unknown command {args.command}")


def _serve(pipeline: LocalPipeline, port: int) -> int:
    from shared.local.server import LocalServer

    server = LocalServer(pipeline, port=port).start()
    print(f"serving {server.base_url}/api/replay (POST) and {server.base_url}/api/status (GET); Ctrl-C stops")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print()
    finally:
        server.stop()
    return 0


def init_db(settings: Settings) -> int:
    """Create or complete the warehouse schema: Azure SQL when SQL_* is set, else local DuckDB."""
    from shared.bootstrap import make_warehouse

    warehouse = make_warehouse(settings)
    try:
        warehouse.apply_schema()
    finally:
        warehouse.close()
    where = settings.sql_server or ("SQL_CONNECTION_STRING" if settings.sql_connection_string else None)
    print(f"schema applied ({warehouse.dialect}) to {where or settings.local_data_dir / 'warehouse.duckdb'}")
    return 0


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


if __name__ == "__main__":
    sys.exit(main())
