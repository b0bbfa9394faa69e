"""The Gaussian coding tables, one canonical copy, the same on every machine.

The rANS coder codes each latent with a 16-bit CDF table chosen by its
predicted scale.  CompressAI computes these tables in ``update()`` with
float32 ``erfc``, whose last bits differ between CPUs, GPUs and library
builds; one entry off, and a file no longer decodes elsewhere.  The tables
depend on nothing but the scale table (the paper's 64 scales from 0.11 to
256 for every TCM model), so they are computed once, stored in
``models/data/gaussian_cdf.npz``, and installed by :meth:`models.TCM.update`
on every machine instead of being recomputed.  ``python -m models.coding_tables``
writes the file again from CompressAI's own computation.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

import torch
from compressai.entropy_models import GaussianConditional
from compressai.models.base import get_scale_table
from torch import Tensor

from utils.files import atomic_write

TABLES_FILE = Path(__file__).resolve().parent / "data" / "gaussian_cdf.npz"
BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


def compute_gaussian_tables(scale_table: Tensor | None = None) -> dict[str, Tensor]:
    """CompressAI's tables for ``scale_table`` (default: the paper's), computed on this machine."""
    gc = GaussianConditional(None)
    gc.update_scale_table(get_scale_table() if scale_table is None else scale_table)
    return {"scale_table": gc.scale_table.clone(), **{b: getattr(gc, b).clone() for b in BUFFERS}}


@functools.lru_cache(maxsize=1)
def canonical_gaussian_tables() -> dict[str, Tensor]:
    """The stored tables of the paper's scale table (CPU tensors; do not modify)."""
    with np.load(TABLES_FILE) as data:
        return {k: torch.from_numpy(data[k].copy()) for k in ("scale_table", *BUFFERS)}


#: How far a scale table may be from the stored one and still be the paper's: CompressAI computes it with float32
#: ``exp``, whose last bit differs between CPU kernels (AVX2 and AVX-512 here); installing the stored tables, scale
#: table included, makes every machine code with the same one.
CANONICAL_RTOL = 1e-6


def is_canonical_scale_table(scale_table: Tensor) -> bool:
    reference = canonical_gaussian_tables()["scale_table"]
    table = scale_table.detach().cpu().float()
    return table.shape == reference.shape and torch.allclose(table, reference, rtol=CANONICAL_RTOL, atol=0)


def install_canonical_tables(gc: GaussianConditional) -> bool:
    """Replace ``gc``'s tables by the stored ones if its scale table is the paper's; whether it was."""
    if not is_canonical_scale_table(gc.scale_table):
        return False
    device = gc.scale_table.device
    for name, value in canonical_gaussian_tables().items():
        setattr(gc, name, value.clone().to(device))
    return True


class SearchedGaussianConditional(GaussianConditional):
    """CompressAI's ``GaussianConditional`` whose scale indexes come from one binary search,
    and whose tables for the paper's scale table are the stored ones.

    ``build_indexes`` counts the table entries below each scale: CompressAI
    does it with one comparison pass per entry (64 passes over every latent),
    this with ``torch.searchsorted``, giving the same integers (the table is
    compared in the scales' dtype, as CompressAI's comparisons promote it).
    ``update`` installs the stored tables where the scale table is the paper's
    (the same on every machine, and without SciPy, which CompressAI's
    computation needs); any other scale table is computed as CompressAI does.
    """

    def update(self) -> None:
        if not install_canonical_tables(self):
            super().update()

    def build_indexes(self, scales: Tensor) -> Tensor:
        table = self.scale_table
        if table.numel() < 2 or not bool((table[1:] > table[:-1]).all()):
            return super().build_indexes(scales)
        scales = self.lower_bound_scale(scales)
        boundaries = table[:-1].to(device=scales.device, dtype=scales.dtype)
        return torch.searchsorted(boundaries, scales.contiguous(), right=False, out_int32=True)


def write_tables(path: Path = TABLES_FILE) -> None:
    tables = compute_gaussian_tables()
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **{k: v.numpy() for k, v in tables.items()})


if __name__ == "__main__":
    write_tables()
    print(f"wrote {TABLES_FILE}")
