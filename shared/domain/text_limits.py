"""How long a text may be (contract section 2), counted as SQL Server counts NVARCHAR: in UTF-16
code units, so a character outside the Basic Multilingual Plane (an emoji, say) counts twice.
Both warehouses apply the same limits because the domain does, before anything is staged.
And how a text from outside is cut to one short line for a message (`flattened`, `shortened`)."""

from __future__ import annotations

MAX_COMPANY_ID = 64  # NVARCHAR(64): the key of every table
MAX_TEXT = 400  # NVARCHAR(400): company_name, country, industry_tag


def flattened(text: str) -> str:
    """`text` on one line: every character that is not printable (a newline, a control
    character) read as a space, and every run of spaces one space."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def shortened(text: str, limit: int) -> str:
    """`text`, or its first `limit` - 3 characters and "..." when it is longer than `limit`."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def too_long(text: str, limit: int) -> bool:
    """True when `text` needs more than `limit` UTF-16 code units. Runs once per field of a
    million-row file, so the common cases are decided from len() alone: a character is one or
    two units."""
    length = len(text)
    if length > limit:
        return True
    if 2 * length <= limit:
        return False
    return utf16_units(text) > limit


def length_problem(field: str, text: str, limit: int) -> str | None:
    """The quarantine reason for a text over its limit, or None."""
    if not too_long(text, limit):
        return None
    units = utf16_units(text)
    if units == len(text):
        return f"{field} longer than {limit} characters"
    return f"{field} longer than {limit} UTF-16 code units, as SQL Server counts ({len(text)} characters, {units} units)"
