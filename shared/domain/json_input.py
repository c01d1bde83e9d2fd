"""JSON from outside (HTTP bodies, queue messages): parsed, or refused with one line.

`json.loads` raises three different errors for what a sender can get wrong, and one of them,
RecursionError for a body nested a few thousand levels deep, is not a ValueError at all: left
alone it escapes every handler and becomes a 500 (or a dropped connection locally).
"""

from __future__ import annotations

import json
from typing import Any


class NotJson(ValueError):
    """The text is not JSON we can read; the message says why in a few words."""


def parse_json(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise NotJson("not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise NotJson(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise NotJson("nested too deeply") from None
    except ValueError as exc:  # a number of thousands of digits (Python's int conversion limit)
        if "digits" in str(exc):
            raise NotJson("a number too long to read") from None
        raise NotJson(f"not valid JSON ({str(exc)[:80]})") from None
