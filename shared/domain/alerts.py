"""What an alert carries (contract section 5), and how one is read from a message body."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Alert:
    severity: Severity
    stage: str  # fetch, usage-load, crm-load, quality-gate, transform, ingest, a queue name, ...
    kind: str  # a stable name per failure kind, e.g. "crm_file_rejected"
    message: str  # one line for a human
    run_id: str = ""
    activity_date: str | None = None
    detail: str = ""

    def fingerprint(self) -> str:
        """Same failure, same fingerprint, whichever run saw it: lets the bus drop repeats."""
        key = "|".join((self.kind, self.stage, self.activity_date or "", self.message))
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def title(self) -> str:
        """`[ERROR] stage date`: how a chat message or a log line starts."""
        return f"[{self.severity.upper()}] {self.stage}" + (
            f" {self.activity_date}" if self.activity_date else ""
        )

    def to_json(self) -> dict[str, Any]:
        return {"type": "alert", **asdict(self)}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Alert:
        return cls(
            severity="warning" if body.get("severity") == "warning" else "error",
            stage=str(body.get("stage") or "unknown"),
            kind=str(body.get("kind") or "unknown"),
            message=str(body.get("message") or "(no message)"),
            run_id=str(body.get("run_id") or ""),
            activity_date=body.get("activity_date") or None,
            detail=str(body.get("detail") or ""),
        )


def alert_from_body(body: bytes) -> Alert:
    """An alert the pipeline raised; an unreadable one still becomes an alert."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict):
        return Alert(
            "error",
            "alerts",
            "unreadable_alert",
            "an alert message could not be read",
            detail=body[:2000].decode("utf-8", "replace"),
        )
    return Alert.from_json(data)


def alert_from_dead_letter(body: bytes, source_queue: str, reason: str, description: str) -> Alert:
    """A message that no retry could handle, forwarded from a queue's dead letters."""
    try:
        original = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        original = None
    day = original.get("date") if isinstance(original, dict) else None
    run_id = original.get("run_id", "") if isinstance(original, dict) else ""
    last_line = (description or reason or "unknown error").strip().splitlines()[-1:] or [""]
    return Alert(
        severity="error",
        stage=source_queue or "unknown",
        kind="dead_letter",
        message=f"message on '{source_queue}' dead-lettered ({reason}): {last_line[0]}"[:500],
        run_id=str(run_id or ""),
        activity_date=str(day) if day else None,
        detail=f"body: {body[:2000].decode('utf-8', 'replace')}\nerror: {description}",
    )
