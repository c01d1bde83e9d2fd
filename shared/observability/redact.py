"""Keep secrets out of logs, alerts and errors."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:AccountKey|SharedAccessKey|Password|Pwd|sig|code)=)[^;&\s\"']+"),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def redact_fields(record: Mapping[str, Any], secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The record with every text value redacted (an alert on its way out, say)."""
    secrets = list(secrets)
    return {k: redact(v, secrets) if isinstance(v, str) else v for k, v in record.items()}


class RedactingFilter(logging.Filter):
    """Installed on the root handlers so no log line carries a secret, whoever writes it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:  # formatters use exc_text when it is set
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.secrets)
        return True
