"""Regenerate the repository's conformance set (tests/data/conformance/).

    python tools/make_conformance.py                      # streams and decodes from the kept model
    python tools/make_conformance.py --new-model --train-data DIR [--steps N]

The set is fixed input for ``tests/file_codec/test_conformance.py``: files made
on the machine that ran this script, decoded by every machine that runs the
tests.  Run it only to change the set on purpose (a new format version, a new
model), never to make a failing test pass: a test that fails on it means that
a decoder no longer reads files made elsewhere.

The model is small on purpose (N=16, one TCM block per stage, float8 storage
of the transforms: under 1 MB), trained for a few hundred steps so that its
latents and scales spread like a real model's; the images are synthetic
(smooth shapes, edges, texture), so that nothing but this script is needed.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from file_codec import Codec, container  # noqa: E402
from models import TCM, CodingMode  # noqa: E402
from models.release import ENTROPY_PREFIXES, release_state_dict  # noqa: E402
from utils.files import save_image_atomic, write_bytes_atomic, write_text_atomic  # noqa: E402

OUT = ROOT / "tests" / "data" / "conformance"
MODEL = "model.pth.tar"
#: The small model's shape: every part of TCM, at the smallest widths the architecture allows.
SHAPE = dict(N=16, M=32, num_slices=2, max_support_slices=2, hyper_channels=16, atten_dim=16,
             entropy_hidden=(16, 16), config=(1, 1, 1, 1, 1, 1), head_dim=(8, 8, 8, 8, 8, 8))
#: Storage of the transforms' weights (the entropy model's tensors stay float32).
STORAGE = torch.float8_e4m3fn
#: (name, height, width, tile side): one-tile images and one cut into tiles.
IMAGES = [("smooth", 136, 200, 2048), ("tiled", 260, 300, 128), ("odd", 77, 131, 2048)]
#: The encoders' transforms: one stream of each image and format version in each.
TRANSFORMS = CodingMode.TRANSFORMS
#: (format version, entropy arithmetic) written: version 2 (zero padding, one latent checksum), 3 (edge padding, a
#: checksum per tile) in float64, and 4 in exact integers.
VERSIONS = ((2, "float64"), (3, "float64"), (4, "int8"))


def synthetic_image(height: int, width: int, seed: int) -> Image.Image:
    """Smooth colour fields, a few hard-edged shapes and fine texture, from a fixed seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.zeros((height, width, 3))
    for c in range(3):
        for _ in range(4):
            fy, fx, phase = rng.uniform(0.5, 6, 2).tolist() + [rng.uniform(0, 2 * np.pi)]
            img[..., c] += rng.uniform(0.05, 0.25) * np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)
    img += 0.5
    for _ in range(6):
        top, left = rng.integers(0, height), rng.integers(0, width)
        h, w = rng.integers(4, max(5, height // 2)), rng.integers(4, max(5, width // 2))
        img[top : top + h, left : left + w] = rng.uniform(0, 1, 3)
    img += rng.normal(0, 0.04, img.shape)
    return Image.fromarray((img.clip(0, 1) * 255).round().astype(np.uint8), "RGB")


def train_model(data: Path, steps: int, seed: int = 0) -> TCM:
    """A few hundred steps of the paper's recipe on 128x128 crops of ``data`` (λ=0.013, MSE)."""
    from datasets import PatchDataset, list_images
    from training.step import Optimization, train_step

    torch.manual_seed(seed)
    net = TCM(**SHAPE).train()
    recipe = Optimization.paper_recipe(net, 0.013, lr=1e-3)
    dataset = PatchDataset(list_images(data), (128, 128), train=True, seed=seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True, drop_last=True)
    done = 0
    while done < steps:
        for x in loader:
            figures = train_step(recipe, x)
            done += 1
            if done % 50 == 0:
                print(f"step {done}: loss {figures['loss']:.4f} bpp {figures['bpp']:.3f} "
                      f"psnr {figures['psnr']:.2f}", flush=True)
            if done == steps:
                break
    return net.eval()


def store(net: TCM) -> bytes:
    """The release file's bytes: entropy model in float32, the rest in float8."""
    net.update(force=True)
    full = net.state_dict()  # rounded once, from float32 (release_state_dict's half file leaves the tables out)
    sd = {k: full[k].to(STORAGE) if v.dtype == torch.float16 and not k.startswith(ENTROPY_PREFIXES) else v
          for k, v in release_state_dict(net, half=True).items()}
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    return buffer.getvalue()


def with_integer_parameters(path: Path) -> None:
    """Add the integer entropy model's parameters (calibrated on the built-in photographs) to a model file that
    has none; its weights, and so every earlier stream, are untouched."""
    from models import load_model
    from models.integer_entropy import CHECKPOINT_KEY, IntegerEntropyModel, calibration_latents, sample_images

    stored = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(stored, dict) and CHECKPOINT_KEY in stored:
        return
    net = load_model(path)
    integer = IntegerEntropyModel.calibrated(net.entropy_model, calibration_latents(net, sample_images()))
    buffer = io.BytesIO()
    torch.save({"state_dict": stored, CHECKPOINT_KEY: integer.integer_parameters.values}, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} threads; torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-model", action="store_true", help="train a new model (changes every file)")
    parser.add_argument("--train-data", type=Path, help="folder of training images (with --new-model)")
    parser.add_argument("--steps", type=int, default=150, help="training steps of a new model (default %(default)s)")
    args = parser.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    if args.new_model:
        if args.train_data is None:
            parser.error("--new-model needs --train-data DIR")
        write_bytes_atomic(OUT / MODEL, store(train_model(args.train_data, args.steps)))
    with_integer_parameters(OUT / MODEL)
    codec = Codec.load(OUT / MODEL)
    for sub in ("streams", "decoded-float32"):
        (OUT / sub).mkdir(exist_ok=True)
    entries, psnr = [], []
    for i, (name, height, width, tile) in enumerate(IMAGES):
        image = synthetic_image(height, width, seed=100 + i)
        for (version, entropy), transforms in ((v, t) for v in VERSIONS for t in TRANSFORMS):
            stem = f"{name}-v{version}-enc-{transforms}" if entropy == "float64" else \
                f"{name}-v{version}-{entropy}-enc-{transforms}"
            data = Codec(codec.net, codec.weights_id, tile=tile, mode=f"{entropy}/{transforms}",
                         version=version).encode(image)
            header, _ = container.parse(data)
            write_bytes_atomic(OUT / "streams" / f"{stem}.tcm", data)
            float32 = Codec(codec.net, codec.weights_id, mode="float64/float32").decode(data)
            save_image_atomic(float32, OUT / "decoded-float32" / f"{stem}.png", "PNG")
            bfloat16 = Codec(codec.net, codec.weights_id, mode="float64/bfloat16").decode(data)
            mse = np.mean((np.asarray(bfloat16, dtype=np.float64) - np.asarray(float32, dtype=np.float64)) ** 2)
            psnr.append(10 * np.log10(255**2 / mse) if mse else float("inf"))
            entries.append({"stream": f"streams/{stem}.tcm", "decoded_float32": f"decoded-float32/{stem}.png",
                            "transforms": transforms, "entropy": header.entropy, "version": header.version,
                            "tiles": len(header.lengths), "bytes": len(data)})
            print(f"{stem}: {width}x{height}, {len(header.lengths)} tile(s), {len(data)} bytes, "
                  f"bfloat16 decode {psnr[-1]:.1f} dB of the float32 one")
    manifest = {
        "model": MODEL,
        "weights_id": codec.id_hex,
        "made_on": machine(),
        "date": date.today().isoformat(),
        # The bound a bfloat16 decode must meet: 4 dB under the lowest seen on the machine that made the set.
        "bfloat16_min_psnr": round(float(min(psnr)) - 4, 1),
        "bfloat16_psnr_here": [round(float(p), 2) for p in psnr],
        "streams": entries,
    }
    write_text_atomic(OUT / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(entries)} streams to {OUT.relative_to(ROOT)}; model {(OUT / MODEL).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
