"""One rule for which HTTP answers are retried (the usage API and the alert webhook share it)."""

from __future__ import annotations

import pytest

from shared.domain.http_status import is_transient, phrase


@pytest.mark.parametrize("status", [429, 500, 501, 502, 503, 504, 599])
def test_slow_down_and_server_errors_are_transient(status: int) -> None:
    assert is_transient(status)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 409, 418, 422, 600])
def test_everything_else_is_not(status: int) -> None:
    assert not is_transient(status)


def test_phrase() -> None:
    assert (phrase(404), phrase(799)) == ("Not Found", "")
