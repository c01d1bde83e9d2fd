"""Loading a native extension without a stop signal cutting into its initialization.

DuckDB's extension builds Python enums while it loads (through nanobind). A Ctrl-C, `kill` or
hangup whose Python handler raises in that moment (the command line's handlers raise
KeyboardInterrupt, as Python's default one does) does not stop the import cleanly: measured by
sending SIGINT 5-60 ms into `import duckdb`, it either aborts the process ("Critical nanobind
error: ... enum_create", exit 134, a traceback on stderr), or ends as an ImportError, or is lost
and the command runs on. While the extension loads, a stop signal is only noted; once it has
loaded, the first noted one is given to the handler that was there, which acts as it would have.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, ModuleType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def import_uninterrupted(name: str) -> ModuleType:
    """`import name`, with stop signals held until it has loaded (at once if it already has)."""
    if (loaded := sys.modules.get(name)) is not None:  # every query asks: no handlers swapped then
        return loaded
    with stop_signals_held():
        return importlib.import_module(name)


@contextmanager
def stop_signals_held() -> Iterator[None]:
    # Python runs signal handlers only in the main thread: nothing can cut into another thread.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        noted.append(signum)

    previous = {stop: signal.signal(stop, note) for stop in STOP_SIGNALS}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler if handler is not None else signal.SIG_DFL)
        if noted:  # the handler that was there acts now: raises, notes, ends the process or ignores
            signal.raise_signal(noted[0])
