"""A write-through journal that makes the in-process bus survive its process.

Service Bus keeps a message until it is completed, whatever happens to the consumer. The local
host gets the same guarantee from this SQLite file: a message is written when sent, its
delivery count when it is received, and it is deleted only when completed or dead-lettered.
A process killed mid-run leaves its messages here, and the next command delivers them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, message_id TEXT NOT NULL, body BLOB NOT NULL,
    properties TEXT NOT NULL, delivery_count INTEGER NOT NULL, enqueued_at TEXT NOT NULL,
    dead_letter_reason TEXT, dead_letter_error_description TEXT, dead_letter_source TEXT,
    scheduled_at TEXT);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, message_id TEXT NOT NULL, body BLOB NOT NULL,
    properties TEXT NOT NULL, delivery_count INTEGER NOT NULL, reason TEXT, description TEXT,
    dead_lettered_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS seen_ids (
    queue TEXT NOT NULL, message_id TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (queue, message_id));
"""


class BusJournal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One connection, used only under the bus's lock.
        self._con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.executescript(_SCHEMA)
        columns = {row[1] for row in self._con.execute("PRAGMA table_info(messages)")}
        if "scheduled_at" not in columns:  # a journal written before scheduled messages
            self._con.execute("ALTER TABLE messages ADD COLUMN scheduled_at TEXT")

    def close(self) -> None:
        self._con.close()

    def pending(self) -> list[dict[str, Any]]:
        rows = self._con.execute(
            "SELECT seq, queue, message_id, body, properties, delivery_count, enqueued_at, dead_letter_reason,"
            " dead_letter_error_description, dead_letter_source, scheduled_at FROM messages ORDER BY seq"
        ).fetchall()
        keys = (
            "seq",
            "queue",
            "message_id",
            "body",
            "properties",
            "delivery_count",
            "enqueued_at",
            "dead_letter_reason",
            "dead_letter_error_description",
            "dead_letter_source",
            "scheduled_at",
        )
        return [{**dict(zip(keys, row, strict=True)), "properties": json.loads(row[4])} for row in rows]

    def recent_ids(self, window_s: float) -> list[tuple[str, str, float]]:
        """(queue, message id, seconds ago) of ids sent within the duplicate-detection window."""
        now = time.time()
        self._con.execute("DELETE FROM seen_ids WHERE at < ?", (now - window_s,))
        return [
            (q, m, now - at) for q, m, at in self._con.execute("SELECT queue, message_id, at FROM seen_ids")
        ]

    def max_seq(self) -> int:
        row = self._con.execute(
            "SELECT MAX(seq) FROM (SELECT seq FROM messages UNION ALL SELECT seq FROM dead_letters)"
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else -1

    def sent(self, queue: str, message_id: str) -> None:
        self._con.execute(
            "INSERT OR REPLACE INTO seen_ids VALUES (?, ?, ?)", (queue, message_id, time.time())
        )

    @staticmethod
    def _identity(envelope: Any) -> tuple[Any, ...]:
        """The columns both tables start with."""
        return (
            envelope.sequence_number,
            envelope.queue,
            envelope.message_id,
            envelope.body,
            json.dumps(envelope.properties, default=str),
            envelope.delivery_count,
        )

    def add(self, envelope: Any) -> None:
        self._con.execute(
            "INSERT OR REPLACE INTO messages (seq, queue, message_id, body, properties, delivery_count,"
            " enqueued_at, dead_letter_reason, dead_letter_error_description, dead_letter_source,"
            " scheduled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *self._identity(envelope),
                envelope.enqueued_at.isoformat(),
                envelope.dead_letter_reason,
                envelope.dead_letter_error_description,
                envelope.dead_letter_source,
                envelope.scheduled_at.isoformat() if envelope.scheduled_at else None,
            ),
        )

    def delivered(self, envelope: Any) -> None:
        self._con.execute(
            "UPDATE messages SET delivery_count = ? WHERE seq = ?",
            (envelope.delivery_count, envelope.sequence_number),
        )

    def remove(self, envelope: Any) -> None:
        self._con.execute("DELETE FROM messages WHERE seq = ?", (envelope.sequence_number,))

    def dead_lettered(self, envelope: Any) -> None:
        self._con.execute("BEGIN")
        self._con.execute("DELETE FROM messages WHERE seq = ?", (envelope.sequence_number,))
        self._con.execute(
            "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *self._identity(envelope),
                envelope.dead_letter_reason,
                envelope.dead_letter_error_description,
                time.time(),
            ),
        )
        self._con.execute("COMMIT")
