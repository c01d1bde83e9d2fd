"""The CLI's one command table: the parser, the folder, its lock, the pipeline and the exit
status each command gets are the ones its entry in COMMANDS declares."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from shared.local import cli
from shared.local.cli import COMMANDS, Call, Folder, Pipeline, build_parser, main
from shared.local.errors import CliError
from shared.local.folder_lock import FolderBusy, FolderLock

# What argparse needs besides the command name (the checks are left out below).
ARGUMENTS = {
    "backfill": ["--from", "2026-10-01", "--to", "2026-10-02"],
    "crm-drop": ["companies.csv"],
    "reconcile": ["--date", "2026-10-01"],
}
SET_UP_BY_THE_TABLE = [name for name, entry in COMMANDS.items() if entry.folder is not Folder.PROBES]


class _Pipeline:
    """Stands in for the local pipeline: the test is about who opens it, and how."""

    opened: list[_Pipeline] = []

    def __init__(self, settings: Any, *, read_only: bool = False) -> None:
        self.read_only, self.closed = read_only, False
        _Pipeline.opened.append(self)

    def close(self) -> None:
        self.closed = True


def _locked(folder: Path) -> bool:
    """Whether some command holds the folder's lock now."""
    probe = FolderLock(folder, "probe")
    try:
        probe.acquire(wait=False)
    except FolderBusy:
        return True
    probe.release()
    return False


def _with_handler(monkeypatch: pytest.MonkeyPatch, name: str, handler: Any) -> None:
    """COMMANDS with `name` running `handler` and none of its own checks."""
    entry = dataclasses.replace(COMMANDS[name], handler=handler, before=(), checks=())
    monkeypatch.setattr(cli, "COMMANDS", MappingProxyType({**COMMANDS, name: entry}))
    monkeypatch.setattr("shared.local.pipeline.LocalPipeline", _Pipeline)
    _Pipeline.opened = []


def test_the_parser_offers_the_table_s_commands_in_its_order() -> None:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(commands.choices) == list(COMMANDS)
    assert {a.dest: a.help for a in commands._choices_actions} == {n: c.help for n, c in COMMANDS.items()}
    assert {n: p.epilog for n, p in commands.choices.items()} == {n: c.epilog for n, c in COMMANDS.items()}


@pytest.mark.parametrize("name", SET_UP_BY_THE_TABLE)
def test_each_command_gets_the_folder_lock_and_pipeline_its_entry_declares(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry, folder = COMMANDS[name], tmp_path / "data"
    monkeypatch.setenv("LOCAL_DATA_DIR", str(folder))
    seen: dict[str, Any] = {}

    def handler(call: Call) -> int:
        seen["locked"] = folder.is_dir() and _locked(folder)
        seen["read only"] = None if call.opened is None else call.opened.read_only  # type: ignore[attr-defined]
        return 0

    _with_handler(monkeypatch, name, handler)
    assert main([name, *ARGUMENTS.get(name, [])]) == 0
    assert folder.exists() is (entry.folder is not Folder.READS)  # one that only reads makes nothing
    read_only = {Pipeline.NONE: None, Pipeline.READS: True, Pipeline.WRITES: False}[entry.pipeline]
    assert seen == {"locked": entry.folder is Folder.LOCKS, "read only": read_only}
    assert all(pipeline.closed for pipeline in _Pipeline.opened)


@pytest.mark.parametrize("name", SET_UP_BY_THE_TABLE)
def test_a_failure_is_one_line_and_the_entry_s_exit_status(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCAL_DATA_DIR", str(tmp_path / "data"))

    def handler(call: Call) -> int:
        raise CliError("it went wrong")

    _with_handler(monkeypatch, name, handler)
    assert main([name, *ARGUMENTS.get(name, [])]) == COMMANDS[name].failure_exit
    assert capsys.readouterr().err == "error: it went wrong\n"
