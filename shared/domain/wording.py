"""Counts said in words: `1 day`, `2 days`, never `1 days`."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str = "") -> str:
    """`n` and its noun, singular for exactly one (`plural` when adding an s is wrong)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def agreeing(n: int, one: str, many: str) -> str:
    """The word that agrees with a count of `n`: `was`/`were`, `has`/`have`."""
    return one if n == 1 else many
