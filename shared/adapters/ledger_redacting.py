"""A run ledger that never stores a secret: every text written is redacted first.

Errors are stored as the services meet them, and an error may quote an answer that echoed the
request (the key, a URL's password); the ledger is read by `status`, GET /api/status, the
report and whoever opens the file, so what goes in is cleaned once, here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.observability.redact import redact_value
from shared.ports import LedgerEntry, RunLedger


class RedactingLedger:
    def __init__(self, inner: RunLedger, secrets: Iterable[str]) -> None:
        self.inner = inner
        self._secrets = tuple(s for s in secrets if s)

    def get(self, partition: str, key: str) -> LedgerEntry | None:
        return self.inner.get(partition, key)

    def put(
        self, partition: str, key: str, data: Mapping[str, Any], *, etag: str | None = None
    ) -> LedgerEntry:
        return self.inner.put(partition, key, redact_value(data, self._secrets), etag=etag)

    def query(self, partition: str) -> list[LedgerEntry]:
        return self.inner.query(partition)

    def query_range(self, partition: str, first: str, last: str) -> list[LedgerEntry]:
        return self.inner.query_range(partition, first, last)

    def __getattr__(self, name: str) -> Any:  # what an adapter offers beyond the port (tests, close)
        return getattr(self.inner, name)
