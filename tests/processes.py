"""Child processes a test starts: waited for by what they print, never for a fixed time, and
never outliving the test (issue 19: two simulators a failed run left were still running 83
minutes later).

Request the `children` fixture (tests/conftest.py); whatever it started and is still running at
teardown is SIGKILLed, whether the test passed, failed or timed out. Every wait has a generous
upper bound, reached only by a failure: then the test fails saying what the child printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]

READY_S = 120.0  # the upper bound of a wait: a failure, never the expected path
EXIT_S = 60.0


class _Lines:
    """Every line a pipe gives, read by a thread of its own so a wait can be bounded."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, found: Callable[[str], bool], timeout: float) -> str | None:
        """The first line `found` accepts; None if the pipe closed (or time ran out) first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if found(line):
                        return line
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    return None
                self._changed.wait(left)

    def text(self, timeout: float) -> str:
        self._thread.join(timeout)
        with self._changed:
            return "".join(self.lines)


class Child:
    """One started process, its stdout and stderr read as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.process = process
        self.pid = process.pid
        self._out = _Lines(process.stdout)
        self._err = _Lines(process.stderr)

    def line(self, starts: str, timeout: float = READY_S) -> str:
        """The first stdout line starting with `starts`, once printed (or the test fails)."""
        return self._first(self._out, "line", starts, timeout)

    def err_line(self, starts: str, timeout: float = READY_S) -> str:
        """The first stderr line starting with `starts`, once printed (or the test fails)."""
        return self._first(self._err, "stderr line", starts, timeout)

    def _first(self, stream: _Lines, what: str, starts: str, timeout: float) -> str:
        line = stream.wait_for(lambda text: text.startswith(starts), timeout)
        if line is None:
            out = f"stdout: {self._tail(self._out)}; " if stream is self._out else ""
            raise AssertionError(
                f"no {what} starting {starts!r} from pid {self.pid} (exit {self.process.poll()});"
                f" {out}stderr: {self._tail(self._err)}"
            )
        return line

    @staticmethod
    def _tail(stream: _Lines) -> str:
        return repr("".join(stream.lines)[-2000:])

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout: float = EXIT_S) -> tuple[int, str, str]:
        """Its exit status, stdout and stderr, once it has exited (or the test fails)."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"pid {self.pid} still running after {timeout:.0f} s; stderr so far: {self._tail(self._err)}"
            ) from None
        return code, self._out.text(timeout), self._err.text(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class Children:
    """The processes one test started."""

    def __init__(self) -> None:
        self._started: list[Child] = []

    def start(
        self,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
        **popen: Any,
    ) -> Child:
        """Started with the stop signals' default actions, as from a terminal, however the
        suite was started: `nohup` or `&` in a script leave SIGHUP or SIGINT ignored, and an
        ignored signal sent before the child installs its handlers is gone (`preexec_fn` runs
        after that reset)."""

        def defaults() -> None:
            for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(stop, signal.SIG_DFL)
            if preexec_fn is not None:
                preexec_fn()

        popen.setdefault("stdin", subprocess.DEVNULL)
        child = Child(
            subprocess.Popen(
                list(args),
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=os.environ.copy() if env is None else env,
                preexec_fn=defaults,
                **popen,
            )
        )
        self._started.append(child)
        return child

    def kill_all(self) -> None:
        for child in self._started:
            child.kill()
