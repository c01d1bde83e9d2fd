"""Logging set-up shared by the Function App and the local host: secrets never reach a log line."""

from __future__ import annotations

import logging

from shared.config import Settings
from shared.redact import RedactingFilter


def configure_logging(settings: Settings | None = None, level: int | None = None) -> None:
    settings = settings or Settings.from_env()
    root = logging.getLogger()
    if level is not None:
        root.setLevel(level)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(settings.secrets()))
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
