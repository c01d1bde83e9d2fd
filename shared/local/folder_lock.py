"""One working command at a time per LOCAL_DATA_DIR, and a clear line about who holds it.

DuckDB lets one process write a database file, and the bus journal is delivered by whoever
loads it: two commands working on one folder would fail on DuckDB's lock or deliver the same
messages twice. So every command that works takes this lock first; a second one waits for it
and says which command holds it. `status` reads only the ledger (SQLite, which readers may
share) and takes no lock.

The lock is an `flock` on LOCAL_DATA_DIR/command.lock, which the kernel releases when its
process dies, however it dies: a killed command never leaves a stale lock behind. The file's
text names the holder, for the waiting line. Within one process the lock counts its holders,
so `serve`'s threads can share one hold.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; WSL has it. Without it, commands are not serialized.
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "command.lock"


class FolderBusy(RuntimeError):
    """Another command holds the folder; the message names it."""


class FolderLock:
    def __init__(self, folder: Path, command: str) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        self.command = command
        self._fd: int | None = None
        self._holds = 0
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        return self._holds > 0

    def acquire(self, *, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> None:
        """Take the lock. Busy: wait (after telling `on_wait` who holds it), or raise FolderBusy."""
        with self._mutex:
            if self._holds:
                self._holds += 1
                return
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _try_lock(fd):
                    holder = self.holder()
                    if not wait:
                        raise FolderBusy(f"{holder} is working on {self.folder}; try again when it finishes")
                    if on_wait is not None:
                        on_wait(f"waiting for {holder} to finish with {self.folder} (Ctrl-C to give up)")
                    _lock(fd)
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(self._me()).encode(), 0)
            except BaseException:
                os.close(fd)  # closing the descriptor drops the lock if it was taken
                raise
            self._fd, self._holds = fd, 1

    def release(self, *, all_holds: bool = False) -> None:
        with self._mutex:
            if not self._holds:
                return
            self._holds = 0 if all_holds else self._holds - 1
            if self._holds == 0 and self._fd is not None:
                os.ftruncate(self._fd, 0)
                os.close(self._fd)  # releases the flock
                self._fd = None

    def holder(self) -> str:
        """Who holds the lock, as the waiting line names them."""
        try:
            info: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another command"
        since = datetime.fromtimestamp(float(info.get("since", 0)), UTC).strftime("%H:%M:%S UTC")
        return f"`{info.get('command', '?')}` (pid {info.get('pid', '?')}, since {since})"

    def _me(self) -> dict[str, Any]:
        return {"command": self.command, "pid": os.getpid(), "since": time.time()}

    def __enter__(self) -> FolderLock:
        self.acquire(on_wait=_to_stderr)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
