"""bench.py's table: rows and summaries named by coding mode (evaluation/benchmark.py)."""

from __future__ import annotations

import bench
from evaluation.benchmark import row_name, summarise, worker_argv
from models.coding import CodingMode

BF16 = CodingMode.parse("float32/bfloat16")


def test_rows_are_named_by_their_coding_mode():
    assert row_name("compress", CodingMode.PUBLISHED) == "compress"
    assert row_name("decompress", CodingMode.parse("float64/bfloat16")) == "decompress float64/bfloat16"
    assert row_name("forward", BF16) == "forward" and row_name("train", BF16) == "train"


def test_each_mode_is_summarised_against_the_published_function():
    times = {"compress": 2.0, "decompress": 3.0, "compress float32/bfloat16": 1.0, "decompress float32/bfloat16": 1.5}
    rows = {name: {"time": t, "flops": 1e9, "matmul_gflops": 10.0} for name, t in times.items()}
    rows["compress"]["bytes"], rows["compress float32/bfloat16"]["bytes"] = 1000, 1010
    assert summarise(rows) == {"coding": {
        "float32/float32": {"compress_s": 2.0, "decompress_s": 3.0, "compress_speedup": 1.0, "decompress_speedup": 1.0,
                            "bytes": 1000, "bytes_change": 0.0},
        "float32/bfloat16": {"compress_s": 1.0, "decompress_s": 1.5, "compress_speedup": 2.0,
                             "decompress_speedup": 2.0, "bytes": 1010, "bytes_change": 1010 / 1000 - 1},
    }}


def test_a_worker_gets_its_one_mode_in_the_same_spelling():
    argv = worker_argv(bench.parse_args(["--model", "s"]), "s", "compress", "strings.json", CodingMode.PORTABLE)
    assert argv[argv.index("--coding") + 1] == "float64/float32"
    assert bench.parse_args(argv[2:]).coding == [CodingMode.PORTABLE]  # what the worker reads back
