"""``eval.py --report DIR``: one self-contained page of an evaluation, ``DIR/index.html``.

The RD plot, the averages, the BD figures, and for every image the original
beside each checkpoint's reconstruction and each classical codec at the
matching rate, with an enlarged crop of the most detailed region and where
the model spent its bits.  Everything the page shows lies beside it
(``DIR/rd.png``, ``DIR/assets/``); it needs no server, script or network.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote, unquote

from utils.files import write_text_atomic

from .bd import FEW_OVERLAP
from .tables import cell, point_rows
from .visuals import Shown, Visuals

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1600px; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; } th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
.row { display: flex; gap: 10px; flex-wrap: wrap; align-items: flex-start; margin-bottom: 8px; }
figure { margin: 0; } figure img { display: block; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; text-align: center; margin-top: 2px; }
.small { color: #666; font-size: 0.85em; }
"""


def text(value: Any) -> str:
    """Any value as HTML text or a quoted attribute's value: names of files and checkpoints are data, not markup."""
    return html.escape(str(value), quote=True)


def url(path: str) -> str:
    """A relative path as an attribute's URL: percent-encoded (no scheme, query or fragment can sneak in), escaped."""
    return text(quote(path, safe="/"))


def _figure(shown: Shown | None, which: str, width: int) -> str:
    if shown is None:
        return ""
    src = shown.image if which == "image" else shown.crop
    if src is None:
        return ""
    caption = text(shown.label)
    if math.isfinite(shown.bpp):
        caption += f"<br>{shown.bpp:.3f} bpp, {shown.psnr:.2f} dB"
    return (f'<figure><a href="{url(shown.image or src)}"><img src="{url(src)}" width="{width}" '
            f'alt="{text(shown.label)}"></a><figcaption>{caption}</figcaption></figure>')


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{text(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{text(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(visuals: Visuals, doc: dict[str, Any], bd: dict[str, Any], codecs: Sequence[str],
                 plot: str | None) -> Path:
    """Write ``index.html`` into the report folder; its path."""
    assert visuals.report is not None
    out = visuals.report
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{text(doc['name'])}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{text(doc['name'])}</h1><p>{text(doc.get('description', ''))}</p>"]
    prov = doc.get("provenance") or {}
    if prov:
        parts.append("<p class='small'>" + text(", ".join(f"{k} {v}" for k, v in prov.items())) + "</p>")
    if plot:
        parts.append(f"<h2>Rate–distortion</h2><img src='{url(plot)}' alt='RD plot' style='max-width:100%'>")
    header, rows = point_rows(doc)
    parts.append("<h2>Averages</h2>" + _table(header, rows))
    if bd:
        bd_rows = [[str(name), cell(f.get("bd-rate"), "+.2f"), cell(f.get("bd-psnr"), "+.3f"),
                    cell(f.get("overlap"), ".0%"), cell(f.get("gap"), "+.2f"), f.get("note", "")]
                   for name, f in bd.items()]
        parts.append("<h2>Against the anchors</h2><p class='small'>BD-rate in %, negative: fewer bits for the "
                     "same PSNR; overlap: share of the joint PSNR range both curves cover (below "
                     f"{FEW_OVERLAP:.0%}, read with care); gap: PSNR difference at the model's own rates, in dB.</p>"
                     + _table(["anchor", "BD-rate %", "BD-PSNR dB", "overlap", "gap dB", "note"], bd_rows))
    views = ("Full views are lossless PNG." if visuals.view_suffix == ".png" else
             "Full views are JPEG (quality 92, no chroma subsampling) to keep the page light; the crops and "
             "bit maps are lossless PNG (eval.py --report-format full keeps every picture lossless).")
    parts.append("<h2>Images</h2><p class='small'>Each codec at the quality whose file for that image is "
                 "closest in rate to the model's; the crops (enlarged 2x, nearest neighbour) show the most "
                 f"detailed square of the image. Click a picture for the full image. {views}</p>")
    for image_name, entry in visuals.images.items():
        parts.append(f"<h3>{text(image_name)}</h3>")
        columns = 2 + len(codecs)  # original, model, codecs
        width = min(300, 1200 // columns - 14) if entry["size"][0] >= entry["size"][1] else min(220, 900 // columns)
        for ck, shown in entry["models"].items():
            matched = [entry["baselines"].get(ck, {}).get(c) for c in codecs]
            panels = [entry.get("original"), shown, *matched]
            parts.append("<div class='row'>" + "".join(_figure(p, "image", width) for p in panels) + "</div>")
            parts.append("<div class='row'>" + "".join(_figure(p, "crop", 192) for p in panels) + "</div>")
            maps = "".join(f'<figure><img src="{url(src)}" width="{width + 60}" alt="{text(k)}"><figcaption>'
                           f"where {text(ck)} spent its bits: {text(k[-1])}</figcaption></figure>"
                           for k, src in shown.extra.items())
            if maps:
                parts.append(f"<div class='row'>{maps}</div>")
    parts.append("</body></html>\n")
    path = out / "index.html"
    write_text_atomic(path, "\n".join(parts))
    return path


def page_size(page: Path) -> tuple[int, int]:
    """(bytes, files) of a report page and every file it shows or links to, each counted once."""
    text_ = page.read_text()
    refs = {unquote(html.unescape(r)) for r in re.findall(r"""(?:src|href)=["']([^"']+)["']""", text_)}
    files = [page] + [page.parent / r for r in sorted(refs) if (page.parent / r).is_file()]
    return sum(f.stat().st_size for f in files), len(files)
