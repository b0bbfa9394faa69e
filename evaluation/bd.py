"""Bjøntegaard deltas between two RD curves (BD-rate, BD-PSNR), with the overlap they rest on."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .results import json_safe, rd_points

#: Below this share of the joint quality range that both curves cover, a BD figure rests on a short stretch
#: of curve: eval.py's line, its report and the demo add a caution.  The one threshold of the project: the
#: fits average over the shared range only and are told ``min_overlap=0`` (``bjontegaard`` would warn below
#: its own 0.75), so a figure is given at any overlap and the caution says how much of the curves it covers.
FEW_OVERLAP = 0.5


def bd_metrics(anchor: dict[str, Any], test: dict[str, Any], metric: str = "psnr-rgb") -> dict[str, Any]:
    """BD-rate (%) and BD-PSNR (dB) of ``test`` against ``anchor``, PCHIP (``bjontegaard``).

    Negative BD-rate: ``test`` needs fewer bits for the same quality.  Figures
    are None, with a ``note``, when either curve has fewer than two points or
    the curves do not overlap; ``gap`` (:func:`quality_gap`) is given whenever
    the test's rates fall within the anchor's.  ``overlap`` is the share of the joint quality
    range (for BD-rate) that both curves cover; below :data:`FEW_OVERLAP` the
    figure rests on a short stretch of curve.  BD-rate reads
    rate as a function of quality, so it needs a quality that rises with rate
    on both curves; where one does not (a higher-rate point of lower quality),
    BD-rate is None with the reason and BD-PSNR, which needs only rising
    rates, is still given.  Whatever the fit refuses becomes a note, never an
    exception: one comparison never stops an evaluation.
    """
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
    notes = []
    falling = [f"{name}'s {falls}" for name, r, d in ((anchor.get("name", "anchor"), ra, da),
                                                       (test.get("name", "test"), rt, dt))
               if (falls := quality_falls(r, d, metric))]
    if falling:
        notes.append(f"BD-rate not computable: {metric} must rise with rate; " + "; ".join(falling))
    else:
        out["bd-rate"], why = _fit("bd_rate", ra, da, rt, dt)
        notes += [f"BD-rate not computable: {why}"] if why else []
    out["bd-psnr"], why = _fit("bd_psnr", ra, da, rt, dt)
    notes += [f"BD-PSNR not computable: {why}"] if why else []
    if notes:
        out["note"] = "; ".join(notes)
    return json_safe(out)


def quality_falls(rates: np.ndarray, quality: np.ndarray, metric: str) -> str | None:
    """Where a curve's quality does not rise with its rate ("... at 0.400 bpp, after ... at 0.200"), or None."""
    for i in range(1, len(rates)):
        if not quality[i] > quality[i - 1]:
            return (f"{metric} {quality[i]:.3f} at {rates[i]:.3f} bpp, after {quality[i - 1]:.3f} "
                    f"at {rates[i - 1]:.3f} bpp")
    return None


def _fit(which: str, ra: np.ndarray, da: np.ndarray, rt: np.ndarray, dt: np.ndarray) -> tuple[float | None, str]:
    """One ``bjontegaard`` figure, or (None, why) where the library refuses the curves."""
    import bjontegaard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(getattr(bjontegaard, which)(ra, da, rt, dt, method="pchip",
                                                      require_matching_points=False, min_overlap=0))
        # ValueError for curves the fit rejects; AssertionError where it checks an ordering with assert.
        except (ValueError, AssertionError, ArithmeticError) as e:
            return None, str(e) or type(e).__name__
    if not np.isfinite(value):
        return None, "the fit gave no finite value"
    return value, ""


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
