"""Test-wide settings: the tests never read or write the user's cache folder."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_cache_folder(tmp_path_factory):
    """``XDG_CACHE_HOME`` in a temporary folder (the codec's weights index lives there), subprocesses included."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield
