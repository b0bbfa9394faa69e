"""Pictures of an evaluation: bit maps, reconstructions, the report page and the figure."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

import eval as ev
from evaluation.evaluate import evaluate_image
from models import load_model
from tests.helpers import entropy_fitted_checkpoint, synthetic_photo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return entropy_fitted_checkpoint(tmp_path_factory.mktemp("ck"))


def test_bit_maps_sum_to_the_images_bits(trained):
    path, img = trained
    outputs: dict = {}
    row = evaluate_image(load_model(path), img, torch.device("cpu"), real=True, outputs=outputs)
    map_bits = float(outputs["bits_y"].astype(np.float64).sum() + outputs["bits_z"].astype(np.float64).sum())
    assert map_bits == pytest.approx(row["bits-y"] + row["bits-z"], rel=1e-5)
    assert map_bits == pytest.approx(row["bpp-estimated"] * img.width * img.height, rel=1e-5)
    # the real stream: the same bits within 3 %, plus the coder's few bytes per stream
    assert 0.97 * map_bits <= row["bytes"] * 8 <= 1.03 * map_bits + 8 * 24
    assert sum(row["slice-share"]) == pytest.approx(1.0, abs=1e-4) and len(row["slice-share"]) == 5
    assert sum(row["channel-share"]) == pytest.approx(1.0, abs=1e-4) and len(row["channel-share"]) == 80
    assert outputs["x_hat"].size == img.size and outputs["bits_y"].shape == (256, 256)


@pytest.fixture(scope="module")
def report(trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = root / "images"
    data.mkdir()
    synthetic_photo(170, 220, seed=31).save(data / "a.png")
    synthetic_photo(180, 140, seed=32).save(data / "b.png")
    argv = ["--checkpoint", str(trained[0]), "--data", str(data), "--real", "--baselines", "jpeg", "webp",
            "--baseline-qualities", "5", "30", "70", "--report", str(root / "report"), "--save-recon",
            str(root / "recon"), "--figure", str(root / "visual.png"), "--output", str(root / "r.json")]
    assert ev.main(argv) == 0
    return root


@pytest.mark.slow
def test_reconstructions_are_kept_for_the_model_and_each_codec_at_its_rate(report):
    assert (report / "recon" / "tiny-trained" / "a.png").exists()
    for codec in ("jpeg", "webp"):
        assert sorted(p.name for p in (report / "recon" / codec / "tiny-trained").iterdir()) == ["a.png", "b.png"]
    import json

    matched = json.loads((report / "r.json").read_text())["matched"]["tiny-trained"]
    assert set(matched) == {"jpeg", "webp"} and matched["jpeg"]["a.png"]["quality"] in (5, 30, 70)


@pytest.mark.slow
def test_the_page_references_only_files_that_exist(report):
    page = (report / "report" / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r"src='([^']+)'", page)
    assert len(refs) > 20 and not any(r.startswith(("http:", "https:", "//", "/")) for r in refs)
    missing = [r for r in refs if not (report / "report" / r).is_file()]
    assert missing == []
    assert "a.png" in page and "JPEG q=" in page and "WebP q=" in page and "Against the anchors" in page


@pytest.mark.slow
def test_the_figure_has_one_panel_per_codec(report, monkeypatch):
    import evaluation.visuals as visuals

    drawn = []
    monkeypatch.setattr(visuals, "visual_figure", lambda panels, box, path, title="": drawn.append(panels))
    v = visuals.Visuals(figure=str(report / "again.png"))
    img = Image.open(report / "images" / "a.png").convert("RGB")
    v.images["a.png"] = {"box": (0, 0, 64, 64), "models": {"m": visuals.Shown("m", 0.3, 30.0)},
                         "baselines": {"m": {c: visuals.Shown(c, 0.3, 28.0) for c in ("jpeg", "webp", "avif")}},
                         "size": img.size}
    v.kept = {("m", "a.png"): img, **{(f"{c}@m", "a.png"): img for c in ("jpeg", "webp", "avif")}}
    v.write_figure([("a.png", img)], ["m"], ["jpeg", "webp", "avif"], "TCM")
    assert [label.split()[0] for label, _ in drawn[0]] == ["original", "TCM", "jpeg", "webp", "avif"]
    assert Image.open(report / "visual.png").size[0] > 600  # the real one: original, model, JPEG, WebP


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt install chromium)")
@pytest.mark.slow
def test_the_page_renders_in_a_headless_browser(report, tmp_path):
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1400,2400",
                    (report / "report" / "index.html").as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.exists()
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20  # pictures and text, not a blank page
