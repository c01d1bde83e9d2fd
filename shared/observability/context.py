"""Who is logging: the stage, the activity date and the run id ride along on every log line.

Handlers open a context when they start (`log_context(stage=..., date=..., run_id=...)`) and
services add what they learn (`bind(run_id=...)`). A filter copies the context onto every
record, so the local JSON log and Application Insights (custom dimensions) can follow one day
through every function.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

FIELDS = ("stage", "date", "run_id")
# Values are replaced, never mutated: a context copied into a worker thread stays its own.
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "pipeline_log_context", default=MappingProxyType({})
)


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    token = _context.set({**_context.get(), **{k: str(v) for k, v in values.items() if v not in (None, "")}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**values: Any) -> None:
    """Add to the current context (a service that has just learnt its run id)."""
    _context.set({**_context.get(), **{k: str(v) for k, v in values.items() if v not in (None, "")}})


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        current = _context.get()
        for field in FIELDS:
            if not hasattr(record, field):
                setattr(record, field, current.get(field, ""))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, stage, date, run_id."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **{field: getattr(record, field, "") for field in FIELDS},
        }
        if record.exc_info:
            text = record.exc_text or self.formatException(record.exc_info)  # redacted when set
            entry["error"] = text.splitlines()[-1]
            entry["traceback"] = text
        return json.dumps(entry, ensure_ascii=False, default=str)
