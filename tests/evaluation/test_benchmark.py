"""bench.py's table: rows and summaries named by coding mode (evaluation/benchmark.py)."""

from __future__ import annotations

import os

import torch

import bench
from evaluation.benchmark import busy_notes, image_line, row_name, summarise, worker_argv, yardstick_dtype
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


def test_quick_still_warms_up_and_no_image_is_said_to_be_noise():
    args = bench.parse_args(["--model", "s", "--quick"])
    assert (args.repeats, args.warmup, args.batch) == (1, 1, 2)
    line = image_line(args)
    assert line.startswith("image: random noise, 256x256 (no --image given")


def test_a_bfloat16_mode_is_measured_against_a_bfloat16_matmul():
    assert yardstick_dtype("compress", BF16) == torch.bfloat16
    assert yardstick_dtype("decompress", CodingMode.parse("float64/bfloat16")) == torch.bfloat16
    assert yardstick_dtype("compress", CodingMode.PORTABLE) == torch.float32
    assert yardstick_dtype("forward", BF16) == yardstick_dtype("train", BF16) == torch.float32


def _results(rows: dict, load_at_start: float = 0.1) -> dict:
    for r in rows.values():
        r.setdefault("flops", 1e9)
        r["share"] = r["flops"] / r["time"] / 1e9 / r["matmul_gflops"]
    return {"load_at_start": load_at_start, "models": {"s": {"rows": rows, "summary": {}}}}


def test_a_busy_machine_and_shares_above_the_yardstick_are_said(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    quiet = {"forward": {"time": 1.0, "matmul_gflops": 100.0, "matmul_dtype": "float32", "load": 0.5},
             "compress": {"time": 1.0, "matmul_gflops": 95.0, "matmul_dtype": "float32", "load": 0.6}}
    assert busy_notes(_results(quiet)) == []
    busy = {"forward": {"time": 1.0, "matmul_gflops": 100.0, "matmul_dtype": "float32", "load": 3.5},
            "compress": {"time": 0.005, "matmul_gflops": 40.0, "matmul_dtype": "float32", "load": 0.6},
            "compress float32/bfloat16": {"time": 1.0, "matmul_gflops": 300.0, "matmul_dtype": "bfloat16"}}
    notes = busy_notes(_results(busy))
    assert notes[0].startswith("the machine was busy: load average 3.5 on 2 cores")
    assert "the yardstick of s compress was below 70% of the run's best" in notes[1]
    assert notes[2].startswith("share above 100 % (s compress)")
    assert len(notes) == 3  # the bfloat16 row is compared with bfloat16 yardsticks only
