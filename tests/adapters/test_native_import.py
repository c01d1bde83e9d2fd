"""A stop signal while a native extension loads is held, then given to the handler that was there."""

from __future__ import annotations

import signal
import sys
import threading

import pytest

from shared.adapters.native_import import import_uninterrupted, stop_signals_held


def test_a_ctrl_c_inside_is_held_until_the_end_then_acts() -> None:
    done: list[str] = []
    with pytest.raises(KeyboardInterrupt), stop_signals_held():
        signal.raise_signal(signal.SIGINT)  # Python's default handler would raise right here
        done.append("finished")
    assert done == ["finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_handler_that_was_there_decides() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append(signum))
    try:
        with stop_signals_held():
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)
            assert seen == []
        assert seen == [signal.SIGTERM]  # once: the first stop says it
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals_held():
            signal.raise_signal(signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_outside_the_main_thread_it_changes_nothing() -> None:
    errors: list[BaseException] = []

    def load() -> None:
        try:
            with stop_signals_held():  # signal.signal() would raise ValueError in this thread
                pass
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=load)
    worker.start()
    worker.join()
    assert errors == []


def test_the_import_itself_is_loaded_once_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "json", raising=False)
    module = import_uninterrupted("json")
    assert sys.modules["json"] is module and import_uninterrupted("json") is module


def test_a_module_already_loaded_is_returned_without_touching_the_handlers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    swapped: list[object] = []
    monkeypatch.setattr(signal, "signal", lambda *args: swapped.append(args))
    assert import_uninterrupted("json") is json
    assert swapped == []
