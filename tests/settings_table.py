"""README's settings table, generated from the declarations in shared/config.py.

`python -m tests.settings_table` writes the table into README.md between its two markers;
tests/test_config.py fails while README says anything else, so a setting cannot be added,
dropped or changed without its row.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from shared.config import SCHEDULE_ACCEPTS, SCHEDULE_DESCRIPTION, SCHEDULE_SETTING, Settings, accepts

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BEGIN = "<!-- settings table: generated from shared/config.py by `python -m tests.settings_table` -->"
END = "<!-- end of the settings table -->"


def settings_table() -> str:
    """The table README must show: one row per declared setting, in declaration order, then
    the one the Functions host reads itself."""
    rows = [_row(f) for f in dataclasses.fields(Settings)]
    rows.append(_cells(SCHEDULE_SETTING, SCHEDULE_DESCRIPTION, "unset", SCHEDULE_ACCEPTS))
    return "\n".join(["| setting | meaning | default | accepted |", "|---|---|---|---|", *rows])


def readme_table(readme: Path = README) -> str:
    """The table README shows now, between the markers (the test fails without them)."""
    text = readme.read_text()
    assert BEGIN in text and END in text, f"README.md has no {BEGIN!r} ... {END!r} markers"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def _row(f: dataclasses.Field[Any]) -> str:
    description = f.metadata["description"]
    if f.metadata["secret"]:
        description += "; a secret, never logged"
    return _cells(f.metadata["env"], description, _default(f.default), accepts(f))


def _cells(name: str, description: str, default: str, accepted: str) -> str:
    cells = (f"`{name}`", description, default, accepted)
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _default(value: Any) -> str:
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, str):
        return f"`{value}`" if value else "unset"
    return f"{int(value):,}" if value == int(value) else str(value)


def main(argv: list[str]) -> int:
    if argv:  # --help included: this writes README, so it takes nothing it could misread
        print("usage: python -m tests.settings_table  (rewrites README.md's settings table)", file=sys.stderr)
        return 0 if argv in (["-h"], ["--help"]) else 2
    text = README.read_text()
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    README.write_text(f"{before}{BEGIN}\n{settings_table()}\n{END}{after}")
    print(f"wrote the settings table of {README.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
