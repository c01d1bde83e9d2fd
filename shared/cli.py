"""`python -m shared.cli ...`, the command line of contract section 6: see `shared/local/cli.py`."""

from __future__ import annotations

import sys


def _main() -> int:
    """Ctrl-C while the command line's modules load (its first ~150 ms) stops it like any other
    moment: one line and exit 130, never a traceback of the import."""
    try:
        from shared.local.cli import main, stopping_already
    except KeyboardInterrupt:
        print("interrupted before anything was done", file=sys.stderr)
        return 130
    try:
        return main()
    except KeyboardInterrupt:  # one that slipped past the command's own handling (a lazy import)
        with stopping_already():
            print("interrupted: what was not finished is taken up by the next command", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(_main())
