"""bench.py's command line: what it refuses (the measurements themselves are a benchmark, not a test)."""

from __future__ import annotations

import pytest

import bench
from models.coding import CodingMode


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats and --batch must be at least 1"),
    (["--repeats", "0", "--quick"], "--repeats and --batch must be at least 1"),
    (["--measures", "decompress"], "decompress needs compress"),
    (["--model", "s", "--measures", "nope"], "--measures: choose from"),
    (["--coding", "float16/float32"], "argument --coding: coding mode 'float16/float32': choose from float32/float32, "),
    (["--coding"], "argument --coding: expected at least one argument"),
])
def test_bad_options_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench.parse_args(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("bench.py: error: ") and message in err[0]


def test_an_unknown_model_is_refused(capsys):
    assert bench.main(["--model", "huge", "--quick"]) == 1
    assert capsys.readouterr().err.strip() == "bench.py: error: unknown preset 'huge'; choose from small, middle, large (or s, m, l)"


def test_coding_modes_are_taken_once_each_in_the_order_given():
    assert bench.parse_args([]).coding == CodingMode.all()
    args = bench.parse_args(["--coding", "float64/bfloat16", "float32/float32", "float64/bfloat16"])
    assert [str(m) for m in args.coding] == ["float64/bfloat16", "float32/float32"]
