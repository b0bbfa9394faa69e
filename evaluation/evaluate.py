"""One image through a model (estimated or real rates, whole or in tiles), and the averages over images."""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from datasets import to_image, to_tensor
from file_codec.container import tile_grid
from models.coding import Coder
from utils.cli import ToolError
from utils.padding import crop, pad
from utils.process import is_out_of_memory, synchronize

from metrics.bits import STRIDES, bit_map, channel_shares, latent_bits, mean_shares
from metrics.quality import quality, quantize_8bit


class OutOfMemory(ToolError):
    """An image the model cannot hold in memory at once."""


@torch.no_grad()
def evaluate_image(model, img: Image.Image, device: torch.device, real: bool, tile: int | None = None,
                   coder: Coder | None = None, outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rates, qualities and times of one image.

    The image is zero-padded, centred, to multiples of 128 and the result
    cropped back; rates are over the original pixels.  Estimated mode: the
    forward pass's likelihoods (the paper's figure).  Real mode: compress and
    decompress; the decoded image is checked against the encoder's own
    reconstruction ``g_s(y_hat)`` (``matches-encoder``).  With ``tile``, the
    padded image is coded in tiles of that side, as ``codec.py`` codes large
    images; times and sizes are the tiles' sums.  ``coder`` (a
    ``models.coding.Coder`` of ``model``) codes in real mode; the default is
    the published function, ``TCM.compress``.  The row also says where
    the bits went (``bits-y``, ``bits-z``, ``slice-share``, ``channel-share``:
    ``metrics.bits``); ``outputs``, if given, receives the 8-bit
    reconstruction (``x_hat``) and the bit-allocation maps of the padded
    image (``bits_y``, ``bits_z``, bits per pixel) with its ``padding``.
    """
    try:
        return _evaluate(model, img, device, real, tile, coder or Coder(model), outputs)
    except (RuntimeError, MemoryError) as e:
        if not is_out_of_memory(e):
            raise
        hint = f"a smaller --tile than {tile}" if tile else "--tile 1024"
        raise OutOfMemory(f"out of memory on a {img.width}x{img.height} image: evaluate it in tiles with {hint}") \
            from None


def _evaluate(model, img: Image.Image, device: torch.device, real: bool, tile: int | None,
              coder: Coder, outputs: dict[str, Any] | None) -> dict[str, Any]:
    x = to_tensor(img).to(device)
    h, w = x.shape[-2:]
    pixels = h * w
    xp, padding = pad(x)
    hp, wp = xp.shape[-2:]
    tiles = tile_grid(hp, wp, tile or max(hp, wp))
    row: dict[str, Any] = {"width": w, "height": h}
    if len(tiles) > 1:
        row["tiles"] = len(tiles)
    x_hat_p = torch.zeros_like(xp)
    reference_p = torch.zeros_like(xp) if real else None
    # Bit maps at image resolution only when a picture of them is wanted; the totals come from the latents.
    maps = {k: torch.zeros(hp, wp, dtype=torch.float64) for k in STRIDES} if outputs is not None else None
    totals = dict.fromkeys(STRIDES, 0.0)
    channel_bits = torch.zeros(model.M, dtype=torch.float64)
    nbytes, sizes_ok = 0, True
    times = {"forward_time": 0.0} if not real else {"encoding_time": 0.0, "decoding_time": 0.0}
    for t, l, th, tw in tiles:
        part = xp[..., t : t + th, l : l + tw]
        synchronize(device)
        t0 = time.perf_counter()
        if not real:
            out = model(part)
            synchronize(device)
            times["forward_time"] += time.perf_counter() - t0
            x_hat_p[..., t : t + th, l : l + tw] = out["x_hat"].clamp(0, 1)
            likelihoods = out["likelihoods"]
        else:
            enc = coder.compress(part)
            synchronize(device)
            t1 = time.perf_counter()
            dec = coder.decompress(enc["strings"], enc["shape"])["x_hat"]
            synchronize(device)
            times["encoding_time"] += t1 - t0
            times["decoding_time"] += time.perf_counter() - t1
            nbytes += sum(len(s) for strings in enc["strings"] for s in strings)
            likelihoods = enc["likelihoods"]
            sizes_ok &= tuple(dec.shape[-2:]) == (th, tw)
            if tuple(dec.shape[-2:]) == (th, tw):
                x_hat_p[..., t : t + th, l : l + tw] = dec
            # What the encoder committed to: its own y_hat through g_s. A correct
            # decoder, recovering the same symbols, gives the same image.
            reference_p[..., t : t + th, l : l + tw] = coder.synthesize(enc["y_hat"])
        for k, stride in STRIDES.items():
            bits = latent_bits(likelihoods[k].cpu())
            totals[k] += float(bits.sum())
            if maps is not None:
                maps[k][t : t + th, l : l + tw] = bit_map(bits, stride)
            if k == "y":
                channel_bits += bits[0].sum(dim=(1, 2))
    row.update(times)
    x_hat = crop(x_hat_p, padding)
    row["bits-y"], row["bits-z"] = totals["y"], totals["z"]
    row["bpp-estimated"] = (row["bits-y"] + row["bits-z"]) / pixels
    row.update(channel_shares(channel_bits, model.num_slices))
    if not real:
        row["bpp"] = row["bpp-estimated"]
    else:
        reference = crop(reference_p, padding)
        row["bytes"] = nbytes
        row["bpp"] = row["bpp-real"] = nbytes * 8.0 / pixels
        row["rate-ratio"] = row["bpp-real"] / row["bpp-estimated"]
        row["decoded-size-ok"] = sizes_ok
        if sizes_ok:
            row["max-abs-diff"] = float((x_hat - reference).abs().max().item())
            row["matches-encoder"] = bool(torch.equal(quantize_8bit(x_hat), quantize_8bit(reference)))
        else:
            row["max-abs-diff"] = float("nan")
            row["matches-encoder"] = False
    x_hat = x_hat.cpu()
    x = x.cpu()
    row.update(quality(x, x_hat))
    row.update(quality(x, quantize_8bit(x_hat), suffix="-8bit"))
    if outputs is not None:  # what a report or --save-recon shows
        outputs["x_hat"] = to_image(x_hat)
        outputs["padding"] = padding
        outputs.update({f"bits_{k}": v.numpy().astype(np.float32) for k, v in maps.items()})
    return row


# --------------------------------------------------------------------------- summaries
def mean_point(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Averages over images (NaN/None ignored); mismatches counted, never averaged."""
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)]
    keys = [k for k in keys if k not in ("width", "height", "bytes", "rate-ratio", "max-abs-diff", "tiles",
                                         "bits-y", "bits-z")]
    point: dict[str, Any] = {}
    for k in keys:
        vals = [r.get(k) for r in rows]
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        point[k] = float(np.mean(vals)) if vals else float("nan")
    if "bpp-real" in point:
        point["rate-ratio"] = point["bpp-real"] / point["bpp-estimated"]
        point["mismatches"] = sum(not r["matches-encoder"] for r in rows)
        diffs = [r["max-abs-diff"] for r in rows if r.get("max-abs-diff") is not None]
        # NaN (a decoder that gave no number) is the largest: max() alone would keep or drop it by its position
        point["max-abs-diff"] = float("nan") if not diffs or any(math.isnan(d) for d in diffs) else max(diffs)
    for key in ("slice-share", "channel-share"):
        if (shares := mean_shares(list(rows), key)) is not None:
            point[key] = shares
    point["images"] = len(rows)
    return point


