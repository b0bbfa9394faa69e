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

from utils.cli import ToolError
from utils.files import write_text_atomic


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


#: The quality metrics an anchor may carry: each a list, one finite number (or null) per ``bpp`` point.
ANCHOR_METRICS = ("psnr-rgb", "ms-ssim-rgb")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Load a results file, checked in full so that a bad anchor is refused before any work.

    ``results`` holds a ``bpp`` list of finite positive numbers and a
    ``psnr-rgb`` list of the same length (finite numbers, or null for a
    point without one) with at least two points to fit a curve through;
    ``ms-ssim-rgb``, if present, is checked the same way; ``name``, if
    present, is a string.  The message says what is wrong, in one line.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise RDError(f"results file not found: {path}") from None
    except RecursionError:
        raise RDError(f"cannot read results file {path}: nested too deeply to be a results file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RDError(f"cannot read results file {path}: {type(e).__name__}") from None
    results = doc.get("results", doc) if isinstance(doc, dict) else None
    if not isinstance(results, dict) or not isinstance(results.get("bpp"), list) or not results["bpp"]:
        raise RDError(f"{path}: not a results file (no 'results' with a 'bpp' list)")
    bad = next((v for v in results["bpp"] if not (_is_number(v) and v > 0)), "ok")
    if bad != "ok":
        raise RDError(f"{path}: 'bpp' holds {json.dumps(bad)[:40]}: every rate must be a finite number above 0")
    n = len(results["bpp"])
    if "psnr-rgb" not in results:
        raise RDError(f"{path}: no 'psnr-rgb' list (the quality to compare at)")
    for key in ANCHOR_METRICS:
        if key not in results:
            continue
        if not isinstance(results[key], list) or len(results[key]) != n:
            raise RDError(f"{path}: '{key}' does not have one value per 'bpp' point")
        bad = next((v for v in results[key] if v is not None and not _is_number(v)), "ok")
        if bad != "ok":
            raise RDError(f"{path}: '{key}' holds {json.dumps(bad)[:40]}: each value must be a finite number or null")
    if len(rd_points(results, "psnr-rgb")[0]) < 2:
        raise RDError(f"{path}: fewer than two points with a rate and a 'psnr-rgb': no curve to compare with")
    if isinstance(doc, dict) and "results" in doc:
        out = dict(doc)
    else:
        out = {"results": results}
    if "name" in out and not isinstance(out["name"], str):
        raise RDError(f"{path}: 'name' is not a string")
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


