"""Rate–distortion results files: CompressAI's JSON format, written strictly and read with checks.

The results format is CompressAI's (``{"name", "description", "results": {"bpp",
"psnr-rgb", "ms-ssim-rgb", …}}``, one list entry per RD point) so that
``python -m compressai.utils.plot`` and the published anchor files in
``../shared/reference/anchors`` are read the same way as our own output.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from utils import ToolError, write_text_atomic


class RDError(ToolError):
    """A results file that cannot be used; the message is one readable line."""


def json_safe(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python: strict JSON that any reader accepts."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def results_document(
    name: str, description: str, points: Sequence[dict[str, float]], **extra: Any
) -> dict[str, Any]:
    """CompressAI results dict from per-point metric dicts, sorted by ``bpp``.

    Every key present in any point becomes a list (None where a point lacks it).
    ``extra`` entries go beside ``results`` at the top level (per-image rows, BD figures).
    """
    order = sorted(range(len(points)), key=lambda i: points[i]["bpp"])
    keys: list[str] = []
    for p in points:
        keys += [k for k in p if k not in keys]
    results = {k: [points[i].get(k) for i in order] for k in keys}
    return json_safe({"name": name, "description": description, "results": results, **extra})


def write_json(path: str | os.PathLike, doc: dict[str, Any]) -> None:
    """Write atomically (temp file + rename): a crash never leaves half a file."""
    write_text_atomic(path, json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n")


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Load a results file, checked: ``results`` holds ``bpp`` and equal-length metric lists."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise RDError(f"results file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RDError(f"cannot read results file {path}: {type(e).__name__}") from None
    results = doc.get("results", doc) if isinstance(doc, dict) else None
    if not isinstance(results, dict) or not isinstance(results.get("bpp"), list) or not results["bpp"]:
        raise RDError(f"{path}: not a results file (no 'results' with a 'bpp' list)")
    n = len(results["bpp"])
    for key in ("psnr-rgb", "ms-ssim-rgb"):
        if key in results and (not isinstance(results[key], list) or len(results[key]) != n):
            raise RDError(f"{path}: '{key}' does not have one value per 'bpp' point")
    if isinstance(doc, dict) and "results" in doc:
        out = dict(doc)
    else:
        out = {"results": results}
    out.setdefault("name", path.name.split(".")[0])
    return out


def rd_points(results: dict[str, Any], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, metric) of the points where both are known, in rate order, each rate once.

    A codec may give the same file at two settings (Pillow's AVIF at q=3 and
    q=5): such repeated rates are one point (the best quality of them), so
    that curve fits see strictly increasing rates.
    """
    best: dict[float, float] = {}
    for r, d in zip(results.get("bpp", []), results.get(metric, [])):
        if r is not None and d is not None and r > 0 and math.isfinite(r) and math.isfinite(d):
            best[r] = max(d, best.get(r, -math.inf))
    rates = sorted(best)
    return np.array(rates, float), np.array([best[r] for r in rates], float)


