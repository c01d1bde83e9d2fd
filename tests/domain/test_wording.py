"""A count and its noun agree (issue 21: "rebuilt 1 days")."""

from __future__ import annotations

from shared.domain.wording import agreeing, counted


def test_one_is_singular_and_every_other_count_plural() -> None:
    assert [counted(n, "day") for n in (0, 1, 2)] == ["0 days", "1 day", "2 days"]
    assert counted(1, "entry", "entries") == "1 entry" and counted(3, "entry", "entries") == "3 entries"
    assert [agreeing(n, "was", "were") for n in (0, 1, 2)] == ["were", "was", "were"]
