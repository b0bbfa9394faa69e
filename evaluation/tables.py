"""Fixed-width text tables of RD figures, for the terminal."""

from __future__ import annotations

import math
from typing import Any, Sequence


def cell(v: Any, spec: str) -> str:
    """A table cell: ``v`` in format ``spec``, or a dash where there is no finite value."""
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


COLUMNS = [  # (key, header, format)
    ("bpp", "bpp", ".4f"),
    ("bpp-estimated", "est.bpp", ".4f"),
    ("rate-ratio", "real/est", ".4f"),
    ("psnr-rgb", "PSNR", ".3f"),
    ("psnr-rgb-8bit", "PSNR-8b", ".3f"),
    ("ms-ssim-rgb", "MS-SSIM", ".5f"),
    ("ms-ssim-rgb-db", "MS-SSIM dB", ".3f"),
    ("ms-ssim-rgb-8bit", "MS-SSIM-8b", ".5f"),
    ("encoding_time", "enc s", ".3f"),
    ("decoding_time", "dec s", ".3f"),
    ("forward_time", "fwd s", ".3f"),
    ("mismatches", "mismatch", "d"),
]


QUALITY_KEYS = ("psnr-rgb", "psnr-rgb-8bit", "ms-ssim-rgb", "ms-ssim-rgb-db", "ms-ssim-rgb-8bit")


def columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The :data:`COLUMNS` that any of ``rows`` has."""
    return [c for c in COLUMNS if any(c[0] in r for r in rows)]


def table(rows: Sequence[tuple[str, dict[str, Any]]], first: str, width: int = 0,
          cols: Sequence[tuple[str, str, str]] | None = None, header: bool = True) -> str:
    """Fixed-width text table of (label, metrics) rows."""
    cols = columns([r for _, r in rows]) if cols is None else cols
    width = max([width, len(first)] + [len(label) for label, _ in rows])
    lines = [f"{first:<{width}}  " + "  ".join(f"{h:>10}" for _, h, _ in cols)] if header else []
    for label, r in rows:
        lines.append(f"{label:<{width}}  " + "  ".join(f"{cell(r.get(k), f):>10}" for k, _, f in cols))
    return "\n".join(lines)




def points_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A results document's points as dicts, in its (rate) order."""
    res = doc["results"]
    return [{k: res[k][i] for k in res} for i in range(len(res["bpp"]))]


def point_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a results document's averages, with the share of bits per slice: for a report."""
    points = points_of(doc)
    cols = columns(points)
    header = ["checkpoint", "λ", *(h for _, h, _ in cols), "bits per slice"]
    rows = []
    for p in points:
        share = p.get("slice-share")
        slices = " / ".join(f"{100 * v:.0f}%" for v in share) if share else "—"
        rows.append([str(p.get("checkpoint", "")), cell(p.get("lambda"), "g"),
                     *(cell(p.get(k), f) for k, _, f in cols), slices])
    return header, rows
