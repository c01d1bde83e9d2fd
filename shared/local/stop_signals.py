"""Stopping a long-running local command on Ctrl-C, `kill` or a closed terminal, at any moment.

`simulator` makes things only it removes (a temporary CRM folder). It used to install its
handlers after printing where that folder was, and to wait in an untimed `Event.wait()`:

* a stop in between exited 130 or -15 and left the folder in /tmp;
* started by a shell without job control (`cmd &` in a script or a Makefile recipe), it
  inherited SIGINT ignored, so Ctrl-C (`kill -INT`) was lost and it ran on for hours;
* an untimed wait is woken only by a signal the kernel gives to the main thread: one given to
  another thread (the API's) trips Python's handler, which runs only when the main thread
  next runs Python, which an untimed wait never does.

`StopSignals` closes all three: entered before anything is made or printed, its handlers only
note the request (they never raise, so nothing is ever half made or half removed, and what was
made is always known to the code that removes it); they replace an inherited "ignore" too; and
`wait()` sleeps in short steps, so whichever thread the kernel chose, the request is seen within
one step.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STEP_S = 0.1  # the longest a noted stop waits to be seen (plus scheduling)


class StopSignals:
    """Ctrl-C, `kill` and hangup ask the command to stop; none interrupts what it is doing.

    Outside the main thread (where Python allows no handler) it installs nothing and `wait()`
    waits for ever, as the command did before."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for stop in STOP_SIGNALS:
                self._previous[stop] = signal.signal(stop, self._note)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for stop, previous in self._previous.items():
            if previous is not None:  # None: a handler not installed from Python; nothing to restore
                signal.signal(stop, previous)
        self._previous.clear()

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:  # the first one says why
            self.received = signal.Signals(signum)

    @property
    def requested(self) -> bool:
        return self.received is not None

    def wait(self) -> signal.Signals:
        """Until a stop signal comes (at once if one already has)."""
        while self.received is None:
            time.sleep(STEP_S)
        return self.received


@contextmanager
def stopping_already() -> Iterator[None]:
    """While a stop is being said: a second Ctrl-C or kill meanwhile must not cut the line short
    with a traceback. The handlers come back after (tests run commands in their own process, and
    a child started later would inherit an ignored signal)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {stop: signal.signal(stop, signal.SIG_IGN) for stop in STOP_SIGNALS}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler if handler is not None else signal.SIG_DFL)
