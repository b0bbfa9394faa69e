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
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from utils.cli import ToolError
from utils.files import NotARegularFile, open_regular_file, write_text_atomic


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


#: The quality metrics an anchor may carry: each a list, one finite number (or null) per ``bpp`` point, and
#: the range a value must lie in (MS-SSIM is at most 1: identical images; CompressAI's files hold 0..1).
ANCHOR_METRICS = {"psnr-rgb": (-math.inf, math.inf), "ms-ssim-rgb": (0.0, 1.0)}
#: The largest results file read: an anchor holds a few points, an evaluation's output its per-image rows.
MAX_RESULTS_BYTES = 64 << 20
#: Characters a name may not hold: it is printed on a terminal (escape sequences) and on one line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _is_number(v: Any) -> bool:
    """A finite int or float (an integer beyond float's range is not: it has no place on an RD curve)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


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
        with open_regular_file(path) as f:  # a FIFO or a device is refused, not waited on or read forever
            data = f.read(MAX_RESULTS_BYTES + 1)
        if len(data) > MAX_RESULTS_BYTES:
            raise RDError(f"{path}: larger than {MAX_RESULTS_BYTES >> 20} MiB: not a results file")
        doc = json.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise RDError(f"results file not found: {path}") from None
    except NotARegularFile as e:
        raise RDError(f"results file {path} {e}") from None
    except RecursionError:
        raise RDError(f"cannot read results file {path}: nested too deeply to be a results file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RDError(f"cannot read results file {path}: {type(e).__name__}") from None
    except ValueError:  # json's limit on the digits of an integer (4300)
        raise RDError(f"cannot read results file {path}: a number too long to be a rate or a quality") from None
    results = doc.get("results", doc) if isinstance(doc, dict) else None
    if not isinstance(results, dict) or not isinstance(results.get("bpp"), list) or not results["bpp"]:
        raise RDError(f"{path}: not a results file (no 'results' with a 'bpp' list)")
    bad = next((v for v in results["bpp"] if not (_is_number(v) and v > 0)), "ok")
    if bad != "ok":
        raise RDError(f"{path}: 'bpp' holds {json.dumps(bad)[:40]}: every rate must be a finite number above 0")
    n = len(results["bpp"])
    if "psnr-rgb" not in results:
        raise RDError(f"{path}: no 'psnr-rgb' list (the quality to compare at)")
    for key, (low, high) in ANCHOR_METRICS.items():
        if key not in results:
            continue
        if not isinstance(results[key], list) or len(results[key]) != n:
            raise RDError(f"{path}: '{key}' does not have one value per 'bpp' point")
        bad = next((v for v in results[key] if v is not None and not _is_number(v)), "ok")
        if bad != "ok":
            raise RDError(f"{path}: '{key}' holds {json.dumps(bad)[:40]}: each value must be a finite number or null")
        bad = next((v for v in results[key] if v is not None and not low <= v <= high), "ok")
        if bad != "ok":
            raise RDError(f"{path}: '{key}' holds {bad}, outside {low:g}..{high:g}")
    if len(rd_points(results, "psnr-rgb")[0]) < 2:
        raise RDError(f"{path}: fewer than two points with a rate and a 'psnr-rgb': no curve to compare with")
    if isinstance(doc, dict) and "results" in doc:
        out = dict(doc)
    else:
        out = {"results": results}
    if "name" in out and not isinstance(out["name"], str):
        raise RDError(f"{path}: 'name' is not a string")
    if "name" in out and _CONTROL.search(out["name"]):
        raise RDError(f"{path}: 'name' holds control characters (a line break, a terminal escape): "
                      f"{json.dumps(out['name'])[:60]}")
    out.setdefault("name", path.name.split(".")[0])
    return out


def distinct_names(docs: Sequence[dict[str, Any]], files: Sequence[str | os.PathLike],
                   taken: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``docs`` (read from ``files``) with names no two alike, nor like one of ``taken``.

    Curves are told apart by name in the BD lines, the results' ``bd`` and the
    plot's legend: two anchors named alike (``VTM`` of two datasets) would show
    as one.  A name met before becomes ``name (file name)``, numbered if need
    be, and each renaming is said in a note.
    """
    seen = set(taken)
    out = []
    for doc, file in zip(docs, files):
        name = str(doc.get("name"))
        if name in seen:
            new, k = f"{name} ({Path(file).name})", 1
            while new in seen:
                k += 1
                new = f"{name} ({Path(file).name}, {k})"
            print(f"note: {file} is named {name!r} like an earlier curve: shown as {new!r}", file=sys.stderr)
            doc, name = {**doc, "name": new}, new
        seen.add(name)
        out.append(doc)
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


