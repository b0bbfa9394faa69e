"""Test-wide settings: CompressAI and timm imported by their parts (as the tools do), and the tests never read
or write the user's cache folder."""

import pytest

from utils.light_imports import light_imports

light_imports()  # before any test module imports CompressAI or timm


@pytest.fixture(autouse=True, scope="session")
def private_cache_folder(tmp_path_factory):
    """``XDG_CACHE_HOME`` in a temporary folder (the codec's weights index lives there), subprocesses included."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield
