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
import random
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from shared import names
from shared.bootstrap import Services, build_local, use_services
from shared.config import Settings
from shared.local_host import DrainReport, LocalHost
from shared.logs import configure_logging
from shared.redact import redact
from shared.replay import crm_file_status


class CliError(Exception):
    """A failure reported as one line on stderr with a non-zero exit status."""


class LocalPipeline:
    """The local host with the embedded adapters, as the CLI, the demo and the tests use it."""

    def __init__(self, settings: Settings, rng: random.Random | None = None) -> None:
        import function_app  # imported here: it configures logging and reads settings at import

        self.settings = settings
        self.services: Services = build_local(settings)
        use_services(self.services)
        self.host = LocalHost(function_app.app, self.services.bus, rng)  # type: ignore[arg-type]

    def replay(self, body: dict[str, Any], *, progress: bool = False) -> DrainReport:
        response = self.host.http("POST", "replay", body=body)
        if response.status_code != 202:
            raise CliError(
                json.loads(response.get_body()).get("error", f"replay answered {response.status_code}")
            )
        days = len(json.loads(response.get_body())["dates"])
        show = _progress_line(days) if progress and sys.stderr.isatty() else None
        report = self.host.drain(on_progress=show)
        if show is not None:
            print(file=sys.stderr)  # end the progress line
        return report

    def drop_crm(self, data: bytes, blob_name: str) -> DrainReport:
        self.services.blobs.put(names.CRM_CONTAINER, blob_name, data)  # publishes BlobCreated
        return self.host.drain()

    def status(self, day: str | None = None) -> Any:
        response = self.host.http("GET", "status", params={"date": day} if day else None)
        payload = json.loads(response.get_body())
        if response.status_code != 200:
            raise CliError(payload.get("error", f"status answered {response.status_code}"))
        return payload

    def close(self) -> None:
        use_services(None)
        close = getattr(self.services.warehouse, "close", None)
        if close:
            close()


def _progress_line(days: int) -> Callable[[DrainReport], None]:
    """A progress line on a terminal, rewritten in place after every message."""

    def show(report: DrainReport) -> None:
        handled = report.handled
        print(
            f"\r{handled.get(names.FETCH_QUEUE, 0)}/{days} days fetched, "
            f"{handled.get(names.INGEST_QUEUE, 0)} loads, {handled.get(names.TRANSFORM_QUEUE, 0)} builds",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


def day_line(view: dict[str, Any]) -> str:
    """One readable line per day from the status view, worded after its state."""
    day, state = view["date"], day_state(view)
    build, usage, fetch = view.get("days") or {}, view.get("usage") or {}, view.get("fetch") or {}
    if state == "built":
        warnings = build.get("warnings") or []
        text = f"{day}  built      {build.get('rows', 0):>6} rows  snapshot {build.get('snapshot_date')}"
        text += (
            f"  last build: {build.get('inserted', 0)} new, {build.get('updated', 0)} updated,"
            f" {build.get('deleted', 0)} removed"
        )
        return text + (f"  warnings: {'; '.join(warnings)}" if warnings else "")
    if state == "waiting":
        return f"{day}  waiting    usage staged ({usage.get('staged', 0)} records); {build.get('reason')}"
    if state == "blocked":
        return f"{day}  blocked    quality gate: {'; '.join(build.get('errors') or [])}"
    if state == "staged":
        return f"{day}  staged     {usage.get('staged')} records, not built yet"
    if state == "fetch incomplete":
        return f"{day}  fetch incomplete: {fetch.get('last_error')}; the next run resumes it"
    if fetch:
        return f"{day}  fetch {fetch.get('status')}" + (
            f": {fetch.get('error')}" if fetch.get("error") else ""
        )
    return f"{day}  nothing yet"


def day_state(view: dict[str, Any]) -> str:
    build, usage, fetch = view.get("days") or {}, view.get("usage") or {}, view.get("fetch") or {}
    if build.get("status") in ("built", "waiting"):
        return str(build["status"])
    if build.get("status") == "gate_failed":
        return "blocked"
    if usage:
        return "staged"
    if fetch.get("status") == "running":
        return "fetch incomplete" if fetch.get("last_error") else "fetching"
    return f"fetch {fetch['status']}" if fetch.get("status") else "-"


def status_table(views: Sequence[dict[str, Any]]) -> str:
    """The per-day table of `status`: what is staged, what was built from what, and by which run."""
    header = ("DATE", "USAGE", "SNAPSHOT", "STATE", "ROWS", "WARN", "ERR", "LAST RUN", "AT (UTC)")
    rows = []
    for view in views:
        build, usage, fetch = view.get("days") or {}, view.get("usage") or {}, view.get("fetch") or {}
        staged = f"{usage['staged']} (+{usage.get('quarantined', 0)} q)" if usage else "-"
        run = build.get("run_id") or usage.get("run_id") or fetch.get("run_id") or "-"
        when = str(build.get("built_at") or usage.get("loaded_at") or fetch.get("finished_at") or "-")[:16]
        rows.append(
            (
                view["date"],
                staged,
                build.get("snapshot_date") or "-",
                day_state(view),
                str(build.get("rows", "-")) if build.get("status") == "built" else "-",
                str(len(build.get("warnings") or [])),
                str(len(build.get("errors") or [])),
                run,
                when.replace("T", " "),
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    notes = [
        f"{view['date']}: {note}"
        for view in views
        for note in [
            *((view.get("days") or {}).get("errors") or []),
            *((view.get("days") or {}).get("warnings") or []),
        ]
    ]
    return "\n".join(lines + (["", *notes] if notes else []))


def file_line(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "not loaded"
    if entry.get("status") == "rejected":
        return f"rejected ({entry.get('reason')}); quarantined, the staged snapshot is unchanged"
    text = (
        f"snapshot {entry.get('snapshot_date')} {entry.get('status')}: {entry.get('staged')} rows staged,"
        f" {entry.get('quarantined')} quarantined"
    )
    warnings = entry.get("warnings") or []
    return text + (f" ({'; '.join(warnings)})" if warnings else "")


def day_problem(view: dict[str, Any]) -> str | None:
    """Why a requested day failed, from its state (alerts may have been sent by an earlier run)."""
    build, fetch = view.get("days") or {}, view.get("fetch") or {}
    if fetch.get("status") == "failed":
        return f"{view['date']}: fetch failed: {fetch.get('error')}"
    if fetch.get("status") == "running" and fetch.get("last_error"):
        return f"{view['date']}: fetch incomplete: {fetch.get('last_error')}"
    if build.get("status") == "gate_failed":
        return f"{view['date']} not built: {'; '.join(build.get('errors') or [])}"
    return None


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
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


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
            from shared.demo import run_demo

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
            from shared.report import write_report

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
    from shared.local_server import LocalServer

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
        close = getattr(warehouse, "close", None)
        if close:
            close()
    where = settings.sql_server or ("SQL_CONNECTION_STRING" if settings.sql_connection_string else None)
    print(f"schema applied ({warehouse.dialect}) to {where or settings.local_data_dir / 'warehouse.duckdb'}")
    return 0


def _days(first: date, last: date) -> list[str]:
    from datetime import timedelta

    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


if __name__ == "__main__":
    sys.exit(main())
