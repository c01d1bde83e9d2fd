"""The one error the local tools report as a line on stderr with a non-zero exit."""

from __future__ import annotations


class CliError(Exception):
    """A failure reported as one line on stderr with a non-zero exit status."""


class ArgumentMistake(CliError):
    """An argument the command cannot take (a day not finished yet, a range too long, --force
    without --date): exit 2, as argparse's own refusals."""


_FULL = ("database or disk is full", "no space left on device", "disk quota exceeded", "disk is full")


def disk_full(exc: BaseException) -> bool:
    """The disk (or quota) took no more: an OSError ENOSPC/EDQUOT, or SQLite's or DuckDB's own
    words for it, anywhere in the exception's chain."""
    import errno

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(words in str(current).lower() for words in _FULL):
            return True
        current = current.__cause__ or current.__context__
    return False


class DiskFull(CliError):
    """Nothing more can be written in LOCAL_DATA_DIR: retrying a message cannot help."""


def user_interrupt(exc: BaseException) -> bool:
    """Ctrl-C as DuckDB reports it (`RuntimeError: Query interrupted`, or its
    InterruptException), however deep in the exception's chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, KeyboardInterrupt) or type(current).__name__ == "InterruptException":
            return True
        if isinstance(current, RuntimeError) and str(current).strip() == "Query interrupted":
            return True
        current = current.__cause__ or current.__context__
    return False
