"""Shared fixtures-as-functions for the tests: tiny models and data paths."""

from __future__ import annotations

from pathlib import Path

import struct
import zlib

import pytest
import torch
import torch.nn.functional as F

from models import TCM

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
KODAK = SHARED / "data" / "kodak"
BSDS = SHARED / "data" / "bsds500"
REFERENCE = SHARED / "reference"


def require(path: Path) -> Path:
    """Skip the calling test, with a reason, where ../shared is absent (a user's clone)."""
    if not path.exists():
        pytest.skip(f"{path} not found: this test reads data kept outside the repository (../shared)")
    return path


def tiny_tcm(seed: int = 0, **overrides) -> TCM:
    """A TCM small enough for fast tests, with the full structure of the published one."""
    torch.manual_seed(seed)
    kwargs = dict(N=32, M=80, num_slices=5, hyper_channels=32, atten_dim=32, entropy_hidden=(32, 32))
    kwargs.update(overrides)
    return TCM(**kwargs)


def rd_doc(name: str, bpp, psnr, ssim=None) -> dict:
    """A results document of one curve, for the RD tests."""
    from evaluation.results import results_document

    points = [{"bpp": b, "psnr-rgb": p} for b, p in zip(bpp, psnr)]
    if ssim:
        for pt, s in zip(points, ssim):
            pt["ms-ssim-rgb"] = s
    return results_document(name, "test curve", points)


def synthetic_photo(h: int, w: int, seed: int = 0):
    """Smooth shapes plus fine texture: compresses like a photograph, not like noise."""
    g = torch.Generator().manual_seed(seed)
    x = sum(
        F.interpolate(torch.rand(1, 3, max(2, h // s), max(2, w // s), generator=g), size=(h, w),
                      mode="bicubic", align_corners=False) * a
        for s, a in ((64, 0.6), (16, 0.3), (4, 0.1))
    )
    from datasets import to_image

    return to_image(x.clamp(0, 1))


def refix_crc(data: bytes, header_len: int) -> bytes:
    """A .tcm file's CRC recomputed after an edit, so that the edit reaches the later checks."""
    crc = zlib.crc32(data[header_len:], zlib.crc32(data[: header_len - 4]))
    return data[: header_len - 4] + struct.pack(">I", crc) + data[header_len:]


def noise_image(height: int, width: int, seed: int = 0, mode: str = "RGB"):
    """Random pixels, smoothed a little so that they look like an image rather than pure noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    a = ((a.astype(np.uint16) + np.roll(a, 1, 0) + np.roll(a, 1, 1)) // 3).astype(np.uint8)
    return Image.fromarray(a, "RGB").convert(mode)


def codec_checkpoint(path: Path, seed: int = 0, training: bool = False) -> Path:
    """A tiny model's weights with their entropy tables, saved bare (or as a training checkpoint)."""
    net = tiny_tcm(seed=seed)
    net.update(force=True)
    torch.save({"state_dict": net.state_dict(), "epoch": 1} if training else net.state_dict(), path)
    return path


def fit_entropy_model(model, x: torch.Tensor, steps: int, lr: float = 1e-3) -> None:
    """A few Adam steps on the rate of ``x``, analysis and synthesis frozen.

    A randomly initialised entropy model predicts scales far below the
    quantisation step, where the estimate and the coder's 16-bit tables
    disagree wildly; a few steps make the predicted distributions plausible.
    Only the hyperprior and the slice transforms train (g_a runs once), which
    keeps this cheap.
    """
    from compressai.ops import quantize_ste

    model.train()
    with torch.no_grad():
        y = model.g_a(x)
    params = [p for n, p in model.named_parameters()
              if not n.startswith(("g_a.", "g_s.")) and not n.endswith("quantiles")]
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        z = model.h_a(y)
        _, z_likelihoods = model.entropy_bottleneck(z)
        medians = model.entropy_bottleneck._get_medians()
        z_hat = quantize_ste(z - medians) + medians
        likelihoods = model.entropy_model(y, z_hat)["likelihoods"]
        bits = -sum(torch.log2(lik).sum() for lik in [z_likelihoods, *likelihoods.chunk(model.num_slices, dim=1)])
        opt.zero_grad()
        bits.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    model.update(force=True)
    model.eval()


def entropy_fitted_checkpoint(folder: Path):
    """(checkpoint path, image): a tiny TCM whose entropy model saw the image (a few Adam steps)."""
    import numpy as np

    from datasets import to_image, to_tensor

    x = torch.from_numpy(np.asarray(synthetic_photo(256, 256, seed=3)).copy()).permute(2, 0, 1)[None] / 255.0
    # Fine texture: enough bits that the coder's few bytes of overhead do not dominate.
    x = (x + 0.3 * torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) - 0.15).clamp(0, 1)
    img = to_image(x)
    model = tiny_tcm()
    fit_entropy_model(model, to_tensor(img), steps=10)
    path = folder / "tiny-trained.pth.tar"
    torch.save(model.state_dict(), path)
    return path, img
