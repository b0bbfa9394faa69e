"""What an evaluation shows besides numbers: reconstructions, bit-allocation maps, crops at matched rates.

``--save-recon DIR`` keeps each decoded image (8-bit PNG, what a ``.tcm``
file holds) as ``DIR/<checkpoint>/<image>.png`` and, with ``--baselines``,
each codec's decoded image at the quality closest in rate to the model's on
that image as ``DIR/<codec>/<checkpoint>/<image>.png``; ``<image>`` is the
image's name less its extension, or where two names would meet there
(``x.png`` and ``x.jpg``) the whole name (``x-png``, :func:`file_stems`).  ``--report DIR``
collects the same pictures, the bit-allocation maps and enlarged crops under
``DIR/assets/`` for ``DIR/index.html`` (``evaluation.report``); ``--figure``
draws one image's crops across codecs.  Files are written as each image
finishes, so an interrupted run keeps what it had.

A report's full views are most of its weight (a 1.2-megapixel PNG per codec
per image); the ``light`` format keeps them as high-quality JPEG (q=92,
no chroma subsampling), while the enlarged crops, where codecs are compared,
and the bit maps stay lossless PNG.  ``full`` keeps every picture lossless.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from datasets import to_tensor
from utils.files import save_image_atomic

from . import baselines
from .figures import detail_box, enlarged_crop, save_bit_map, visual_figure
from metrics.quality import psnr


def safe(name: str) -> str:
    """A name usable as one path component."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "_"


def file_stems(names: Sequence[str]) -> dict[str, str]:
    """A file-name stem for each name, no two alike: what the pictures of that image are saved under.

    The name's stem made :func:`safe` (``x.png``: ``x``) where no other name
    gives the same; where several would (``x.png`` and ``x.jpg``, ``a/x.png``
    and ``b/x.png``, ``a b.png`` and ``a_b.png``) each takes its whole name
    (``x-png``, ``a_x-png``), then a number where even those meet.  The same
    names in the same order give the same stems, so a resumed run finds the
    pictures of the run it continues.
    """
    names = list(dict.fromkeys(names))
    stems = {n: safe(Path(n).stem) for n in names}
    shared = Counter(stems.values())
    stems = {n: safe(n.replace(".", "-")) if shared[s] > 1 else s for n, s in stems.items()}
    taken: set[str] = set()
    for n, s in stems.items():
        stem, k = s, 1
        while stem.lower() in taken:  # case-insensitive file systems too
            k += 1
            stem = f"{s}-{k}"
        taken.add(stem.lower())
        stems[n] = stem
    return stems


#: ``--report-format`` -> (file suffix, Pillow format, save options) of the full views.
REPORT_FORMATS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "light": (".jpg", "JPEG", {"quality": 92, "subsampling": 0}),
    "full": (".png", "PNG", {}),
}


def save_png(image: Image.Image, path: Path) -> None:
    save_image_atomic(image, path, "PNG")


@dataclass
class Shown:
    """One picture of one image: what made it and where it is (paths relative to the report)."""

    label: str
    bpp: float
    psnr: float
    image: str | None = None
    crop: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # e.g. bit maps


class Visuals:
    """Writes the pictures of an evaluation as it goes; remembers what it wrote for the report."""

    def __init__(self, recon: str | None = None, report: str | None = None, figure: str | None = None,
                 figure_image: str | None = None, report_format: str = "light", image_names: Sequence[str] = ()):
        self.recon = Path(recon) if recon else None
        self.stems = file_stems(image_names)  # image name -> the stem of its files (x.png and x.jpg apart)
        self.report = Path(report) if report else None
        self.view_suffix, self._view_format, self._view_options = REPORT_FORMATS[report_format]
        self.figure, self.figure_image = figure, figure_image
        self.images: dict[str, dict[str, Any]] = {}  # image name -> {"original", "box", "models": {ck: Shown}}
        self.kept: dict[tuple[str, str], Image.Image] = {}  # (checkpoint, image) -> reconstruction, for the figure

    @property
    def active(self) -> bool:
        return bool(self.recon or self.report or self.figure)

    def _stem(self, image_name: str) -> str:
        if image_name not in self.stems:  # an image not named at the start: after the others, still apart
            self.stems = file_stems([*self.stems, image_name])
        return self.stems[image_name]

    def _recon(self, *folders: str, image_name: str) -> Path:
        """Where ``--save-recon`` keeps a decoded image: ``DIR/<folders>/<image's stem>.png``."""
        assert self.recon is not None
        return self.recon.joinpath(*folders) / f"{self._stem(image_name)}.png"

    def _asset(self, image_name: str, name: str) -> Path:
        assert self.report is not None
        return self.report / "assets" / self._stem(image_name) / name

    def _rel(self, path: Path) -> str:
        assert self.report is not None
        return path.relative_to(self.report).as_posix()

    def _view(self, image: Image.Image, image_name: str, stem: str) -> str:
        """Save a full view in the report's format; its path relative to the report."""
        path = self._asset(image_name, stem + self.view_suffix)
        save_image_atomic(image, path, self._view_format, **self._view_options)
        return self._rel(path)

    def _entry(self, image_name: str, original: Image.Image) -> dict[str, Any]:
        if image_name not in self.images:
            entry = {"box": detail_box(original), "models": {}, "baselines": {}, "size": original.size}
            if self.report:
                view = self._view(original, image_name, "original")
                crop = self._asset(image_name, "original-crop.png")
                save_png(enlarged_crop(original, entry["box"]), crop)
                entry["original"] = Shown("original", float("nan"), float("inf"), view, self._rel(crop))
            self.images[image_name] = entry
        return self.images[image_name]

    def add_model(self, checkpoint: str, image_name: str, original: Image.Image, row: dict[str, Any],
                  outputs: dict[str, Any]) -> None:
        """A checkpoint's reconstruction of an image, and its bit maps (cropped to the image)."""
        if not outputs:
            return
        x_hat: Image.Image = outputs["x_hat"]
        if self.recon:
            save_png(x_hat, self._recon(safe(checkpoint), image_name=image_name))
        entry = self._entry(image_name, original)
        shown = Shown(checkpoint, row["bpp"], row["psnr-rgb"])
        if self.report:
            base = safe(checkpoint)
            view = self._view(x_hat, image_name, base)
            crop = self._asset(image_name, f"{base}-crop.png")
            save_png(enlarged_crop(x_hat, entry["box"]), crop)
            shown.image, shown.crop = view, self._rel(crop)
            left, right, top, bottom = outputs["padding"]
            for k in ("y", "z"):
                bits = outputs[f"bits_{k}"]
                bits = bits[top : bits.shape[0] - bottom, left : bits.shape[1] - right]
                path = self._asset(image_name, f"{base}-bits-{k}.png")
                save_bit_map(bits, path, f"{k}: {row[f'bits-{k}'] / (x_hat.width * x_hat.height):.4f} bpp "
                                         f"({checkpoint}, {image_name})")
                shown.extra[f"bits-{k}"] = self._rel(path)
        entry["models"][checkpoint] = shown
        if self.figure:
            self.kept[(checkpoint, image_name)] = x_hat

    def add_resumed(self, checkpoint: str, image_name: str, original: Image.Image, row: dict[str, Any]) -> None:
        """A row resumed from an interrupted run: its pictures are on disk already, if that run made them."""
        entry = self._entry(image_name, original)
        shown = Shown(checkpoint, row["bpp"], row["psnr-rgb"])
        if self.report:
            base = safe(checkpoint)
            paths = {k: self._asset(image_name, f"{base}{suffix}")
                     for k, suffix in (("image", self.view_suffix), ("crop", "-crop.png"), ("bits-y", "-bits-y.png"),
                                       ("bits-z", "-bits-z.png"))}
            if all(p.exists() for p in paths.values()):
                shown.image, shown.crop = self._rel(paths["image"]), self._rel(paths["crop"])
                shown.extra = {k: self._rel(paths[k]) for k in ("bits-y", "bits-z")}
        entry["models"][checkpoint] = shown
        recon = self._recon(safe(checkpoint), image_name=image_name) if self.recon else None
        if self.figure and recon is not None and recon.exists():
            self.kept[(checkpoint, image_name)] = Image.open(recon).convert("RGB")

    def add_baselines(self, images: list[tuple[str, Image.Image]], per_image: dict[str, list[dict]],
                      base_docs: list[dict], codecs: list[str]) -> dict[str, Any]:
        """Each codec at the quality closest in rate to each checkpoint's, image by image; what was matched."""
        matched: dict[str, Any] = {}
        for ck, rows in per_image.items():
            by_image = {r["image"]: r for r in rows}
            for codec, doc in zip(codecs, base_docs):
                for image_name, img in images:
                    if image_name not in by_image or image_name in doc.get("skipped", {}):
                        continue  # not evaluated, or the codec could not code it (a note says why)
                    q = baselines.matched_quality(doc["per_image"], image_name, by_image[image_name]["bpp"])
                    data, decoded, _, _ = baselines.code_image(img, codec, q)
                    bpp = len(data) * 8.0 / (img.width * img.height)
                    quality = psnr(to_tensor(img), to_tensor(decoded))
                    matched.setdefault(ck, {}).setdefault(codec, {})[image_name] = {
                        "quality": q, "bpp": bpp, "psnr-rgb": quality}
                    self._add_baseline(ck, codec, image_name, img, decoded, bpp, quality, q)
        return matched

    def _add_baseline(self, ck: str, codec: str, image_name: str, original: Image.Image, decoded: Image.Image,
                      bpp: float, quality: float, q: int) -> None:
        name = baselines.display_name(codec).split(" ")[0]
        if self.recon:
            save_png(decoded, self._recon(codec, safe(ck), image_name=image_name))
        entry = self._entry(image_name, original)
        shown = Shown(f"{name} q={q}", bpp, quality)
        if self.report:
            view = self._view(decoded, image_name, f"{codec}-{safe(ck)}")
            crop = self._asset(image_name, f"{codec}-{safe(ck)}-crop.png")
            save_png(enlarged_crop(decoded, entry["box"]), crop)
            shown.image, shown.crop = view, self._rel(crop)
        entry["baselines"].setdefault(ck, {})[codec] = shown
        if self.figure:
            self.kept[(f"{codec}@{ck}", image_name)] = decoded

    def write_figure(self, images: list[tuple[str, Image.Image]], checkpoints: list[str], codecs: list[str],
                     name: str) -> None:
        """``--figure``: the chosen image's crop, original then the middle-rate checkpoint and the codecs."""
        if not self.figure or not checkpoints:
            return
        image_name = self.figure_image or images[0][0]
        original = dict(images)[image_name]
        entry = self._entry(image_name, original)
        ck = checkpoints[len(checkpoints) // 2]
        panels = [("original", original)]
        shown = entry["models"].get(ck)
        if shown and (ck, image_name) in self.kept:
            panels.append((f"{name} {ck}\n{shown.bpp:.3f} bpp, {shown.psnr:.2f} dB", self.kept[(ck, image_name)]))
        for codec in codecs:
            b = entry["baselines"].get(ck, {}).get(codec)
            if b and (f"{codec}@{ck}", image_name) in self.kept:
                panels.append((f"{b.label}\n{b.bpp:.3f} bpp, {b.psnr:.2f} dB", self.kept[(f"{codec}@{ck}", image_name)]))
        visual_figure(panels, entry["box"], self.figure, title=f"{image_name}, crop {entry['box']}")


def figure_names(args_figure_image: str | None, images: list[tuple[str, Image.Image]]) -> None:
    """Refuse, before any work, a --figure-image that is not among the images."""
    from .inputs import EvalError

    if args_figure_image and args_figure_image not in dict(images):
        raise EvalError(f"--figure-image {args_figure_image}: not among the images "
                        f"({', '.join(n for n, _ in images[:5])}{' …' if len(images) > 5 else ''})")


