"""bench.py's command line: what it refuses (the measurements themselves are a benchmark, not a test)."""

from __future__ import annotations

import pytest

import bench


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats and --batch must be at least 1"),
    (["--repeats", "0", "--quick"], "--repeats and --batch must be at least 1"),
    (["--measures", "decompress"], "decompress needs compress"),
    (["--model", "s", "--measures", "nope"], "--measures: choose from"),
])
def test_bad_options_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench.parse_args(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("bench.py: error: ") and message in err[0]


def test_an_unknown_model_is_refused(capsys):
    assert bench.main(["--model", "huge", "--quick"]) == 1
    assert capsys.readouterr().err.strip() == "bench.py: error: unknown preset 'huge'; choose from small, middle, large (or s, m, l)"
