"""One image through a model (estimated or real rates), and the averages over images."""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from datasets import to_tensor
from utils import crop, pad, synchronize

from .metrics import bits, quality, quantize_8bit


@torch.no_grad()
def evaluate_image(model, img: Image.Image, device: torch.device, real: bool) -> dict[str, Any]:
    """Rates, qualities and times of one image (see the module docstring)."""
    x = to_tensor(img).to(device)
    h, w = x.shape[-2:]
    pixels = h * w
    xp, padding = pad(x)
    row: dict[str, Any] = {"width": w, "height": h}
    if not real:
        synchronize(device)
        t0 = time.perf_counter()
        out = model(xp)
        synchronize(device)
        row["forward_time"] = time.perf_counter() - t0
        x_hat = crop(out["x_hat"], padding).clamp_(0, 1)
        row["bpp-estimated"] = bits(out["likelihoods"]) / pixels
        row["bpp"] = row["bpp-estimated"]
    else:
        synchronize(device)
        t0 = time.perf_counter()
        enc = model.compress(xp)
        synchronize(device)
        t1 = time.perf_counter()
        dec = model.decompress(enc["strings"], enc["shape"])
        x_hat = crop(dec["x_hat"], padding)
        synchronize(device)
        t2 = time.perf_counter()
        nbytes = sum(len(s) for strings in enc["strings"] for s in strings)
        # What the encoder committed to: its own y_hat through g_s. A correct
        # decoder, recovering the same symbols, gives the same image.
        reference = crop(model.g_s(enc["y_hat"]).clamp_(0, 1), padding)
        likelihoods = enc["likelihoods"]
        row.update(encoding_time=t1 - t0, decoding_time=t2 - t1, bytes=nbytes)
        row["bpp"] = row["bpp-real"] = nbytes * 8.0 / pixels
        row["bpp-estimated"] = bits(likelihoods) / pixels
        row["rate-ratio"] = row["bpp-real"] / row["bpp-estimated"]
        row["decoded-size-ok"] = tuple(x_hat.shape[-2:]) == (h, w)
        if row["decoded-size-ok"]:
            row["max-abs-diff"] = float((x_hat - reference).abs().max().item())
            row["matches-encoder"] = bool(torch.equal(quantize_8bit(x_hat), quantize_8bit(reference)))
        else:
            row["max-abs-diff"] = float("nan")
            row["matches-encoder"] = False
    x_hat = x_hat.cpu()
    x = x.cpu()
    if tuple(x_hat.shape) == tuple(x.shape):
        row.update(quality(x, x_hat))
        row.update(quality(x, quantize_8bit(x_hat), suffix="-8bit"))
    return row


# --------------------------------------------------------------------------- summaries
def mean_point(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Averages over images (NaN/None ignored); mismatches counted, never averaged."""
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)]
    keys = [k for k in keys if k not in ("width", "height", "bytes", "rate-ratio", "max-abs-diff")]
    point: dict[str, Any] = {}
    for k in keys:
        vals = [r.get(k) for r in rows]
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        point[k] = float(np.mean(vals)) if vals else float("nan")
    if "bpp-real" in point:
        point["rate-ratio"] = point["bpp-real"] / point["bpp-estimated"]
        point["mismatches"] = sum(not r["matches-encoder"] for r in rows)
        point["max-abs-diff"] = max(r["max-abs-diff"] for r in rows)
    point["images"] = len(rows)
    return point


