"""Bjøntegaard deltas between two RD curves (BD-rate, BD-PSNR), with the overlap they rest on."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .results import json_safe, rd_points


def bd_metrics(anchor: dict[str, Any], test: dict[str, Any], metric: str = "psnr-rgb") -> dict[str, Any]:
    """BD-rate (%) and BD-PSNR (dB) of ``test`` against ``anchor``, PCHIP (``bjontegaard``).

    Negative BD-rate: ``test`` needs fewer bits for the same quality.  Figures
    are None, with a ``note``, when either curve has fewer than two points or
    the curves do not overlap; ``gap`` (:func:`quality_gap`) is given whenever
    the test's rates fall within the anchor's.  ``overlap`` is the share of the joint quality
    range (for BD-rate) that both curves cover; below ~0.75 the figure
    extrapolates little but rests on a short stretch of curve.
    """
    import bjontegaard

    ra, da = rd_points(anchor["results"], metric)
    rt, dt = rd_points(test["results"], metric)
    out: dict[str, Any] = {"anchor": anchor.get("name"), "bd-rate": None, "bd-psnr": None, "overlap": None,
                           **quality_gap(ra, da, rt, dt)}
    if len(ra) < 2 or len(rt) < 2:
        out["note"] = f"needs at least two '{metric}' points on each curve"
        return out
    lo, hi = max(da.min(), dt.min()), min(da.max(), dt.max())
    out["overlap"] = max(hi - lo, 0.0) / (max(da.max(), dt.max()) - min(da.min(), dt.min()))
    if out["overlap"] <= 0:
        out["note"] = "the curves do not overlap in quality"
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(method="pchip", require_matching_points=False, min_overlap=0)
        try:
            out["bd-rate"] = float(bjontegaard.bd_rate(ra, da, rt, dt, **kw))
            out["bd-psnr"] = float(bjontegaard.bd_psnr(ra, da, rt, dt, **kw))
        except ValueError as e:  # e.g. a quality that is not monotonic in rate
            out["note"] = f"BD not computable: {e}"
    return json_safe(out)


def quality_gap(ra: np.ndarray, da: np.ndarray, rt: np.ndarray, dt: np.ndarray) -> dict[str, Any]:
    """The test's quality minus the anchor's at the test's own rates (mean over them, in the metric's unit).

    The anchor is interpolated linearly in log-rate between its points; test
    rates outside the anchor's range are left out (``gap-points`` counts the
    ones used).  Where two curves share no quality range, BD figures do not
    exist, but this still says how far apart they are where the model works.
    """
    if len(ra) < 2 or len(rt) == 0:
        return {"gap": None, "gap-points": 0}
    inside = (rt >= ra.min()) & (rt <= ra.max())
    if not inside.any():
        return {"gap": None, "gap-points": 0}
    anchor_at = np.interp(np.log(rt[inside]), np.log(ra), da)
    return {"gap": float(np.mean(dt[inside] - anchor_at)), "gap-points": int(inside.sum())}
