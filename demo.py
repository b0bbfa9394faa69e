"""``make demo``: the whole pipeline on built-in photographs, no GPU, no network.

1. writes scikit-image's sample photographs (shipped inside the package) to
   ``demo_out/photos/`` as PNG;
2. evaluates the shipped trained models (``pretrained/``) on them with real
   bitstreams (``--coding float64/float32``: the codec's entropy arithmetic),
   measures Pillow's JPEG and WebP on the same photographs, and writes the
   results JSON, BD-rates, the RD plot and a report page (``eval.py --report``);
3. compresses one photograph to a ``.tcm`` file and back (``codec.py``);
4. prints where everything went.

Each step runs the project's own command line, printed before it runs.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from datasets.samples import export_photos
from evaluation.bd import FEW_OVERLAP
from utils.cli import ArgumentParser, ToolError, run_tool

PROG = "demo.py"

ROOT = Path(__file__).resolve().parent
PRETRAINED = ROOT / "pretrained"
#: Pillow qualities of the JPEG/WebP sweeps; 1 and 3 reach the demo models' low rates.
BASELINE_QUALITIES = ("1", "3", "5", "10", "20", "30", "40", "50", "60", "70", "80", "90", "95")


def run(cmd: list[str]) -> None:
    shown = [Path(c).name if c == sys.executable else c for c in cmd]
    print("\n$ " + " ".join(shlex.quote(str(c)) for c in shown), flush=True)
    done = subprocess.run(cmd, cwd=ROOT)
    if done.returncode != 0:
        raise ToolError(f"step failed with exit status {done.returncode}: {' '.join(map(str, shown))}")


def shipped_models() -> list[Path]:
    models = sorted(PRETRAINED.glob("*.pth.tar"))
    if not models:
        raise ToolError(f"no shipped models in {PRETRAINED}")
    return models


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "demo_out", help="output folder (default: demo_out)")
    args = p.parse_args(argv)
    return run_tool(PROG, lambda: run_demo(args.out))


def run_demo(out: Path) -> int:
    start = time.time()
    py = sys.executable

    photos = export_photos(out / "photos")
    print(f"{len(photos)} built-in photographs (scikit-image) written to {out / 'photos'}")
    models = shipped_models()

    results, plot, report = out / "results.json", out / "rd.png", out / "report"
    run([py, "eval.py", "--checkpoint", *map(str, models), "--data", *map(str, photos),
         "--real", "--coding", "float64/float32",
         "--baselines", "jpeg", "webp", "--baseline-qualities", *BASELINE_QUALITIES, "--name", "TCM-demo",
         "--output", str(results), "--plot", str(plot), "--report", str(report)])

    middle = models[len(models) // 2]
    photo = photos[0]
    coded, decoded = out / f"{photo.stem}.tcm", out / f"{photo.stem}-decoded.png"
    run([py, "codec.py", "compress", str(photo), str(coded), "--checkpoint", str(middle)])
    run([py, "codec.py", "decompress", str(coded), str(decoded), "--checkpoint", str(middle)])
    run([py, "codec.py", "info", str(coded)])

    doc = json.loads(results.read_text())
    print("\nDemo finished in {:.0f} s. Outputs:".format(time.time() - start))
    print(f"  photographs         {out / 'photos'}")
    print(f"  results (TCM)       {results}")
    for codec in ("jpeg", "webp"):
        print(f"  results ({codec:4})      {results.with_name(f'results-{codec}.json')}")
    print(f"  RD plot             {plot}")
    print(f"  report page         {report / 'index.html'}  (open it in a browser: pictures side by side, bit maps)")
    print(f"  compressed file     {coded} ({coded.stat().st_size} bytes, "
          f"{8 * coded.stat().st_size / _pixels(photo):.3f} bpp)")
    print(f"  decompressed image  {decoded}")
    for name, fig in (doc.get("bd") or {}).items():
        if fig.get("bd-rate") is not None:
            caveat = (f" (caution: on only {fig['overlap']:.0%} of the joint PSNR range)"
                      if fig["overlap"] < FEW_OVERLAP else f" (over {fig['overlap']:.0%} of the joint PSNR range)")
            print(f"  BD-rate vs {name:5}   {fig['bd-rate']:+.1f} % (PSNR){caveat}")
    return 0


def _pixels(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as img:
        return img.width * img.height


if __name__ == "__main__":
    sys.exit(main())
