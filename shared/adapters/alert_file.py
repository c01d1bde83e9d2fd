"""Alerts appended to a JSON-lines file: the local host's sink when no webhook is set."""

from __future__ import annotations

import json
from pathlib import Path

from shared.domain.alerts import Alert
from shared.observability.redact import redact_fields


class JsonLinesAlertSink:
    def __init__(self, path: Path, secrets: list[str]) -> None:
        self.path = path
        self._secrets = secrets
        self.target = f"file {path}"

    def deliver(self, alert: Alert) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(redact_fields(alert.to_json(), self._secrets), ensure_ascii=False) + "\n")
