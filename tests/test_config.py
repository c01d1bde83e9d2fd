"""Settings: read from the environment, each declared once."""

from __future__ import annotations

import pytest

from shared.config import Settings


def test_the_settings_are_read_from_the_environment() -> None:
    assert (Settings.from_env({}).usage_api_concurrency, Settings.from_env({}).usage_api_max_rps) == (8, 0.0)
    env = {"USAGE_API_CONCURRENCY": "3", "USAGE_API_MAX_RPS": "12.5"}
    assert (Settings.from_env(env).usage_api_concurrency, Settings.from_env(env).usage_api_max_rps) == (
        3,
        12.5,
    )
    env = {"USAGE_API_CONCURRENCY": "0", "USAGE_API_MAX_RPS": "-1"}
    assert (Settings.from_env(env).usage_api_concurrency, Settings.from_env(env).usage_api_max_rps) == (
        1,
        0.0,
    )
    with pytest.raises(ValueError, match="USAGE_API_MAX_RPS"):
        Settings.from_env({"USAGE_API_MAX_RPS": "fast"})
