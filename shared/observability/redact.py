"""Keep secrets out of logs, alerts and errors."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:AccountKey|SharedAccessKey|Password|Pwd|sig|code)=)[^;&\s\"']+"),
    # A URL's user-info (https://user:password@host): never shown, whatever the URL.
    re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s\"']+(?=@)"),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def secret_url_parts(url: str) -> list[str]:
    """The parts of a secret URL that are secret on their own (its user-info, path and query:
    a webhook's path is its key), to redact wherever one shows up without the rest."""
    parts = urlsplit(url)
    found = [parts.netloc.rpartition("@")[0], parts.query, parts.fragment]
    if parts.path.strip("/"):
        found.append(parts.path)
    return [p for p in found if p and len(p) >= 4]


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
