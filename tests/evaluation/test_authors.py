"""bench.py --authors: the authors' TCM loaded from a checkout, with the measured model's weights (evaluation/authors.py).

Their code does not ship here, so these tests put a stand-in at ``models/tcm.py`` of a folder: a class with
their constructor's arguments (this project's TCM underneath, at the tiny test shape).
"""

from __future__ import annotations

import pytest
import torch

import bench
from evaluation.authors import AuthorsCodeError, authors_model, load_module
from tests.helpers import tiny_tcm

STAND_IN = '''
import torch
from models.tcm import TCM as _TCM


class TCM(_TCM):
    def __init__(self, config, head_dim, drop_path_rate, N, M, num_slices, max_support_slices):
        super().__init__(config=config, head_dim=head_dim, drop_path_rate=drop_path_rate, N=N, M=M,
                         num_slices=num_slices, max_support_slices=max_support_slices, hyper_channels=32,
                         atten_dim=32, entropy_hidden=(32, 32))
        self.updated = False

    def update(self, scale_table=None, force=False):
        self.updated = True
        return super().update(scale_table, force=force)
'''


def checkout(tmp_path, text: str = STAND_IN):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tcm.py").write_text(text)
    return tmp_path


def test_their_model_takes_the_measured_models_weights_and_tables(tmp_path):
    net = tiny_tcm().eval()
    net.update(force=True)
    with torch.inference_mode():  # as bench builds it: its tensors must still be ordinary ones
        theirs = authors_model(checkout(tmp_path), net)
    assert theirs.updated and not theirs.training
    assert not any(t.is_inference() for t in [*theirs.parameters(), *theirs.buffers()])
    ours = net.state_dict()
    assert all(torch.equal(v, ours[k]) for k, v in theirs.state_dict().items())
    x = torch.rand(1, 3, 128, 128)
    with torch.inference_mode():
        enc = theirs.compress(x)
        assert enc["strings"] == net.compress(x)["strings"]


def test_a_folder_without_their_code_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench.parse_args(["--model", "s", "--authors", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "no models/tcm.py there" in err[0]
    with pytest.raises(AuthorsCodeError, match="LIC_TCM"):
        load_module(tmp_path)


def test_a_package_their_code_needs_is_named(tmp_path):
    with pytest.raises(AuthorsCodeError, match="needs 'not_a_package_xyz'.*pip install not_a_package_xyz"):
        load_module(checkout(tmp_path, "import not_a_package_xyz\n"))


def test_their_model_with_other_shapes_is_refused_in_one_line(tmp_path):
    with pytest.raises(AuthorsCodeError, match="does not take this model's shape or weights"):
        authors_model(checkout(tmp_path), tiny_tcm(atten_dim=64).eval())  # theirs: 32


def test_bench_compares_each_mode_with_their_code(tmp_path):
    args = bench.parse_args(["--model", "s", "--measures", "compress,decompress", "--authors", str(checkout(tmp_path))])
    from evaluation.benchmark import row_name, summarise, worker_argv, AUTHORS
    from models.coding import CodingMode

    argv = worker_argv(args, "s", "compress", "strings.json", CodingMode.PUBLISHED, authors=True)
    worker = bench.parse_args(argv[2:])
    assert worker.run_authors and worker.authors == str(tmp_path.resolve())
    times = {"compress": 2.0, "decompress": 3.0, "compress int8/bfloat16": 1.0, "decompress int8/bfloat16": 1.0,
             row_name("compress", AUTHORS): 4.0, row_name("decompress", AUTHORS): 6.0}
    rows = {name: {"time": t, "flops": 1e9, "matmul_gflops": 10.0, "bytes": 100} for name, t in times.items()}
    coding = summarise(rows)["coding"]
    assert coding["int8/bfloat16"]["authors_compress_speedup"] == 4.0
    assert coding["int8/bfloat16"]["authors_decompress_speedup"] == 6.0
    assert coding["float32/float32"]["authors_compress_speedup"] == 2.0
