"""Contract-test fixtures: Azurite for the `azurite` entries of the implementation registries."""

from __future__ import annotations

import pytest

from tests.azurite import azurite  # noqa: F401  (registers the session fixture here)


@pytest.fixture(autouse=True)
def _azurite_for_marked_tests(request: pytest.FixtureRequest) -> None:
    """Start (or reuse) Azurite before a test marked `azurite` builds its store.

    The registry factories only get `tmp_path`; they read the running emulator from
    `tests.azurite.connection_string()`. Autouse fixtures run before the test's other fixtures of
    the same scope, so the emulator is up before the `blob_store` / `ledger` factory runs.
    """
    if request.node.get_closest_marker("azurite") is not None:
        request.getfixturevalue("azurite")
