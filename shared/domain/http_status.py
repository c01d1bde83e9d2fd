"""One rule for which HTTP answers are worth retrying, for every HTTP peer (the usage API, webhooks)."""

from __future__ import annotations

from http import HTTPStatus


def is_transient(status: int) -> bool:
    """429 (slow down) and every 5xx (the server's trouble, not our request's) are retried;
    other non-2xx answers will be the same next time."""
    return status == HTTPStatus.TOO_MANY_REQUESTS or 500 <= status <= 599


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
