"""Logging set-up shared by the Function App and the local host: secrets never reach a log line."""

from __future__ import annotations

import logging
from pathlib import Path

from shared.config import Settings
from shared.observability.context import ContextFilter, JsonFormatter
from shared.observability.redact import RedactingFilter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(
    settings: Settings | None = None,
    level: int | None = None,
    *,
    log_file: Path | None = None,
    to_stderr: bool = True,
) -> None:
    """On Azure the worker owns the handlers and this only adds the redaction filter. The local
    CLI logs to a file and keeps stderr for its one-line reasons unless asked (-v).

    Without `settings`, the secrets to redact are read from the environment as they are:
    nothing here checks a setting, so configuring logging never fails on one (the Function
    App does this at import, and a bad setting must fail only the invocations that need it)."""
    secrets = settings.secrets() if settings is not None else Settings.secret_values()
    root = logging.getLogger()
    if level is not None:
        root.setLevel(level)
    if to_stderr and not root.handlers:
        _add(root, logging.StreamHandler())
    if not to_stderr and log_file is None and not root.handlers:
        # Nowhere to log (a folder it may only read, no -v): say nothing rather than let
        # Python's last-resort handler print records and tracebacks beside the one-line reason.
        root.addHandler(logging.NullHandler())
    if log_file is not None:
        for old in [h for h in root.handlers if getattr(h, "_pipeline_log", False)]:
            root.removeHandler(old)  # one log file per process, the latest LOCAL_DATA_DIR's
            old.close()
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler._pipeline_log = True  # type: ignore[attr-defined]
        file_handler.setFormatter(JsonFormatter())  # one JSON object per line
        root.addHandler(file_handler)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(secrets))
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())  # stage, date and run id on every record
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _add(root: logging.Logger, handler: logging.Handler) -> None:
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
