"""Zero against replicate (edge) padding in the file codec: rate, PSNR, and the error along the borders.

    .venv/bin/python tools/padding_study.py [--checkpoint CK] [--kodak DIR] [--bsds DIR] [--transforms bfloat16]

Each image is coded to a ``.tcm`` file with each padding (``file_codec.Codec``,
the codec's own coding: float64 entropy, ``--transforms`` transforms) and
decoded; the table gives, per set of images, the mean bits per pixel of the
files, the mean PSNR of the decoded images, and the mean PSNR of the frame of
``--border`` pixels along the image's edges, where padding acts.  Kodak at its
own size (768x512) needs no padding, so both paddings code the same tensor
there (checked, not coded); the crops (centred, 700x450 and 333x517 or their transposes for
portrait images) and BSDS500's 481x321 photographs do.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datasets import open_rgb, to_tensor  # noqa: E402
from file_codec import TRANSFORMS, Codec  # noqa: E402
from utils.padding import PADDINGS


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def frame(a: np.ndarray, width: int) -> np.ndarray:
    """The pixels within ``width`` of an edge, as one flat array."""
    inner = np.ones(a.shape[:2], dtype=bool)
    inner[:width] = inner[-width:] = inner[:, :width] = inner[:, -width:] = False
    return a[~inner]


def centred_crop(image, width: int, height: int):
    if image.height > image.width:  # portrait: the transposed size
        width, height = height, width
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def image_sets(kodak: Path, bsds: Path, n_kodak: int, n_bsds: int) -> dict[str, list]:
    photos = [open_rgb(p, warn_alpha=False) for p in sorted(kodak.glob("*.png"))[:n_kodak]]
    sets = {
        "Kodak 768x512": photos,
        "Kodak crops 700x450": [centred_crop(im, 700, 450) for im in photos],
        "Kodak crops 517x333": [centred_crop(im, 517, 333) for im in photos],
    }
    if n_bsds:
        sets["BSDS500 test 481x321"] = [open_rgb(p, warn_alpha=False) for p in sorted(bsds.glob("*.jpg"))[:n_bsds]]
    return sets


def measure(codec: Codec, image, border: int) -> tuple[float, float, float]:
    """(bpp, PSNR, frame PSNR) of one image through a file."""
    data = codec.encode(image)
    decoded = np.asarray(codec.decode(data))
    original = np.asarray(image)
    bpp = 8 * len(data) / (image.width * image.height)
    return bpp, psnr(original, decoded), psnr(frame(original, border), frame(decoded, border))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path,
                   default=next(iter(sorted((ROOT / "pretrained").glob("tcm-demo-mse-0.013-*.pth.tar"))), None))
    p.add_argument("--kodak", type=Path, default=ROOT.parent / "shared" / "data" / "kodak")
    p.add_argument("--bsds", type=Path, default=ROOT.parent / "shared" / "data" / "bsds500" / "test")
    p.add_argument("--kodak-count", type=int, default=24, help="first N Kodak photographs (default 24)")
    p.add_argument("--bsds-count", type=int, default=8, help="first N BSDS500 test photographs (default 8)")
    p.add_argument("--transforms", choices=TRANSFORMS, default="bfloat16",
                   help="arithmetic of the transforms (default: %(default)s)")
    p.add_argument("--border", type=int, default=16, help="width of the frame measured apart (default 16)")
    args = p.parse_args()
    if args.checkpoint is None or not args.kodak.is_dir():
        p.error("needs --checkpoint and --kodak")
    loaded = Codec.load(args.checkpoint, f"float64/{args.transforms}")
    codecs = {name: Codec(loaded.net, loaded.weights_id, mode=loaded.mode, padding=name) for name in PADDINGS}
    start = time.monotonic()
    print(f"{args.checkpoint.name}, {args.transforms} transforms, frame of {args.border} px\n")
    print("| images | n | padding | bpp | PSNR dB | frame PSNR dB |")
    print("|---|---|---|---|---|---|")
    for set_name, images in image_sets(args.kodak, args.bsds, args.kodak_count, args.bsds_count).items():
        padded = [{name: PADDINGS[name](to_tensor(im))[0] for name in codecs} for im in images]
        if all(all(x.equal(p["zero"]) for x in p.values()) for p in padded):
            print(f"| {set_name} | {len(images)} | any: no padding, the same files | | | |", flush=True)
            continue
        for name, codec in codecs.items():
            bpp, quality, border = np.mean([measure(codec, im, args.border) for im in images], axis=0)
            print(f"| {set_name} | {len(images)} | {name} | {bpp:.4f} | {quality:.3f} | {border:.3f} |", flush=True)
    print(f"\n{time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
