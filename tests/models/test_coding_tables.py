"""The Gaussian coding tables: one stored copy, installed everywhere (models/coding_tables.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from compressai.entropy_models import GaussianConditional
from compressai.models.base import get_scale_table

from models import load_model
from models.coding_tables import (SearchedGaussianConditional, canonical_gaussian_tables, compute_gaussian_tables,
                                  is_canonical_scale_table)
from tests.helpers import ROOT, tiny_tcm

BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def test_the_stored_tables_are_compressais_for_the_papers_scales():
    """What CompressAI computes here, up to the last bits of erfc, which differ between CPUs.

    The table sizes and offsets are exact; the scales may differ in their last
    bit (float32 exp: AVX2 and AVX-512 kernels round differently) and a CDF
    value by a quantum or two where another machine's erfc rounds the other way
    (which is why the tables are stored rather than computed).
    """
    stored, computed = canonical_gaussian_tables(), compute_gaussian_tables()
    for name in ("_offset", "_cdf_length"):
        assert torch.equal(stored[name], computed[name]), name
    assert torch.allclose(stored["scale_table"], computed["scale_table"], rtol=1e-6, atol=0)
    assert is_canonical_scale_table(computed["scale_table"])  # so update() installs the stored ones here too
    assert not is_canonical_scale_table(computed["scale_table"] * (1 + 1e-5))  # another table is not
    assert stored["_quantized_cdf"].shape == computed["_quantized_cdf"].shape
    assert (stored["_quantized_cdf"] - computed["_quantized_cdf"]).abs().max() <= 2
    cdf, length = stored["_quantized_cdf"], stored["_cdf_length"]
    assert cdf.shape[0] == 64 and all(cdf[i, length[i] - 1] == 65536 for i in range(64))


def test_update_installs_the_stored_tables_whatever_this_machine_computes(monkeypatch):
    """A machine whose erfc differs in the last bits still codes with the same tables."""
    real = GaussianConditional._standardized_cumulative

    def other_last_bits(self, inputs):
        return real(self, inputs) * (1 + 3e-6)

    monkeypatch.setattr(GaussianConditional, "_standardized_cumulative", other_last_bits)
    assert not torch.equal(compute_gaussian_tables()["_quantized_cdf"], canonical_gaussian_tables()["_quantized_cdf"])
    net = tiny_tcm()
    net.update(force=True)
    for name in BUFFERS:
        assert torch.equal(getattr(net.gaussian_conditional, name), canonical_gaussian_tables()[name]), name


def test_tables_a_file_carries_are_used_not_rebuilt(tmp_path):
    net = tiny_tcm()
    net.update(force=True)
    sd = net.state_dict()
    sd["gaussian_conditional._quantized_cdf"][3, 2] += 1  # a file's own (here: odd) table
    sd["entropy_bottleneck._quantized_cdf"][0, 1] += 1
    torch.save(sd, tmp_path / "ck.pth")
    loaded = load_model(tmp_path / "ck.pth")
    assert torch.equal(loaded.gaussian_conditional._quantized_cdf, sd["gaussian_conditional._quantized_cdf"])
    assert torch.equal(loaded.entropy_bottleneck._quantized_cdf, sd["entropy_bottleneck._quantized_cdf"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_searched_scale_indexes_are_compressais(dtype):
    gc = SearchedGaussianConditional(None)
    gc.update_scale_table(get_scale_table())
    reference = GaussianConditional(None)
    reference.update_scale_table(gc.scale_table.clone())  # the same table (the stored one where this CPU's exp differs)
    table = gc.scale_table.to(dtype)
    torch.manual_seed(0)
    scales = torch.cat([
        torch.exp(torch.empty(20000, dtype=dtype).uniform_(-4, 7)),  # below, inside and above the table
        table, torch.nextafter(table, table + 1), torch.nextafter(table, table - 1),  # on and beside every entry
        torch.tensor([0.0, -1.0, float("inf"), float("nan")], dtype=dtype),
    ]).view(2, -1, 1)
    expected = reference.build_indexes(scales)
    got = gc.build_indexes(scales)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert torch.equal(got, expected)


def test_the_papers_tables_are_installed_without_computing_them():
    """Where the scale table is the paper's, update() installs the stored tables: no SciPy, the same bits."""
    code = textwrap.dedent("""
        import sys, torch
        from models.coding_tables import SearchedGaussianConditional  # CompressAI by its parts, as the tools
        from compressai.models.base import get_scale_table
        from models.coding_tables import SearchedGaussianConditional, canonical_gaussian_tables
        gc = SearchedGaussianConditional(None)
        gc.update_scale_table(get_scale_table())
        stored = canonical_gaussian_tables()
        print(all(torch.equal(getattr(gc, k), v) for k, v in stored.items()), 'scipy.stats._stats_py' in sys.modules)
        gc.update_scale_table(get_scale_table(0.2, 100, 32), force=True)  # another table: computed as CompressAI does
        print(gc._quantized_cdf.shape[0], 'scipy.stats._stats_py' in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False", "32", "True"]
