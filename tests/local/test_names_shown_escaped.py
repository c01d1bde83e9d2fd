"""A CRM file's name may hold anything a file system allows: escape sequences, a right-to-left
override, a newline. Wherever a name reaches the terminal (`crm-drop`'s line, `status`) it is
shown escaped, one line, never drives the terminal (issue 21 item 10)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.support import GOLDEN

Cli = Callable[..., tuple[int, str, str]]
DAY = "2026-10-01"
NAME = f"\x1b[31mred\u202eevil\nfake-line_{DAY}.csv"
RAW = ("\x1b", "\u202e")


def test_control_characters_in_a_file_name_are_shown_escaped(cli: Cli, local_env: Path) -> None:
    crm = next(p for p in GOLDEN.crm_files() if p.name == f"companies_{DAY}.csv")

    code, out, err = cli("crm-drop", str(crm), "--name", NAME)
    assert code == 0, err
    assert out.count("\n") == 1, out  # one line: the newline in the name is shown as \n
    assert "\\x1b[31mred\\u202eevil\\nfake-line" in out, out
    assert not any(c in out + err for c in RAW)

    code, out, err = cli("status")
    assert code == 0, err
    assert "\\x1b[31mred\\u202eevil\\nfake-line" in out, out
    assert not any(c in out + err for c in RAW)
    assert not any(line.startswith("fake-line") for line in out.splitlines()), out
