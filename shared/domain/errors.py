"""Which failures retrying cannot fix."""

from __future__ import annotations

from typing import ClassVar


class PermanentError(Exception):
    """A message that can never succeed: the trigger completes it with an alert at once instead
    of letting Service Bus redeliver it until it dead-letters. `kind` names the alert."""

    kind: ClassVar[str] = "permanent_error"
