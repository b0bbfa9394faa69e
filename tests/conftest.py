"""Test-wide settings and fixtures: the tests never read or write the user's cache folder; a disk that fills up."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_cache_folder(tmp_path_factory):
    """``XDG_CACHE_HOME`` in a temporary folder (the codec's weights index lives there), subprocesses included."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def file_size_limit():
    """``limit(n)``: from then on, writing a file past n bytes fails (EFBIG), as on a full disk (RLIMIT_FSIZE);
    ``limit(None)`` lifts it (the test's end does too)."""
    import resource
    import signal

    previous = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the error, not the signal that kills

    def limit(n: int | None) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (previous[0] if n is None else n, previous[1]))

    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, previous)
        signal.signal(signal.SIGXFSZ, handler)
