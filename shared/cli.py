"""`python -m shared.cli ...`, the command line of contract section 6: see `shared/local/cli.py`."""

from __future__ import annotations

import sys

from shared.local.cli import main

if __name__ == "__main__":
    sys.exit(main())
