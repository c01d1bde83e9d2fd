"""The one error the local tools report as a line on stderr with a non-zero exit."""

from __future__ import annotations


class CliError(Exception):
    """A failure reported as one line on stderr with a non-zero exit status."""
