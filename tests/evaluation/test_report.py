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


def test_the_page_writes_every_name_as_text(tmp_path):
    """The averages table, BD rows, image headings, captions and links of a page built from named parts."""
    from evaluation.report import write_report
    from evaluation.results import results_document
    from evaluation.visuals import Shown, Visuals

    evil = "<img src=x onerror=alert(1)>"
    doc = results_document(evil, f"on {evil}", [{"checkpoint": evil, "bpp": 0.2, "psnr-rgb": 30.0}])
    visuals = Visuals(report=str(tmp_path))
    visuals.images[f"{evil}.png"] = {
        "size": (64, 64), "baselines": {},
        "original": Shown("original", float("nan"), float("inf"), "assets/o'\"x.png", "assets/o c.png"),
        "models": {evil: Shown(evil, 0.2, 30.0, "assets/m.png", "assets/m-crop.png", {"bits-y": "assets/b#1.png"})}}
    bd = {evil: {"bd-rate": None, "bd-psnr": None, "overlap": None, "gap": None, "note": f"<b>{evil}</b>"}}
    page = write_report(visuals, doc, bd, [], "rd.png").read_text()
    assert "<img src=x" not in page and "<b>" not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") >= 6  # title, heading, table, BD row, caption, alt
    assert 'href="assets/o%27%22x.png"' in page and 'src="assets/o%20c.png"' in page
    assert 'src="assets/b%231.png"' in page  # a '#' in a file name is not a fragment


@pytest.mark.slow
def test_names_are_text_in_the_page_never_markup(trained, tmp_path, capsys):
    """A checkpoint, an image and an anchor named with HTML: escaped everywhere, no tag of theirs in the page."""
    import json
    from html.parser import HTMLParser

    evil = "<img src=x onerror=alert(1)>"
    ck = tmp_path / f"{evil}.pth.tar"
    ck.write_bytes(trained[0].read_bytes())
    data = tmp_path / "images"
    data.mkdir()
    synthetic_photo(64, 64, seed=33).save(data / "<b onmouseover='alert(2)'>a&b.png")
    anchor = tmp_path / "anchor.json"
    anchor.write_text(json.dumps({"name": "<script>alert(3)</script>",
                                  "results": {"bpp": [0.1, 1.0, 8.0], "psnr-rgb": [1.0, 20.0, 60.0]}}))
    report = tmp_path / "report"
    assert ev.main(["--checkpoint", str(ck), "--data", str(data), "--anchor", str(anchor),
                    "--report", str(report), "--name", "<i>TCM</i>"]) == 0
    page = (report / "index.html").read_text()
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("report: ")]
    assert len(said) == 1 and re.fullmatch(rf"report: {re.escape(str(report / 'index.html'))} "
                                           r"\(\d+\.\d MB in \d+ files, light format\)", said[0]), said

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.attrs = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.attrs += attrs

    parsed = Tags()
    parsed.feed(page)
    assert set(parsed.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "table",
                                "tr", "th", "td", "figure", "a", "img", "figcaption", "div", "br"}
    assert not any(name.startswith("on") for name, _ in parsed.attrs)
    assert "<img src=x" not in page and "<script" not in page and "<b " not in page and "<i>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # the checkpoint's name, as text
    assert "&lt;b onmouseover=&#x27;alert(2)&#x27;&gt;a&amp;b.png" in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page and "&lt;i&gt;TCM&lt;/i&gt;" in page
    refs = [value for name, value in parsed.attrs if name in ("src", "href")]
    assert refs and all((report / r).is_file() for r in refs)


def test_a_light_report_keeps_the_crops_lossless_and_the_full_views_small(tmp_path):
    """Light (the default): full views JPEG, under a third of the PNG's bytes, crops exact; full: all PNG."""
    from datasets import to_tensor
    from evaluation import baselines
    from evaluation.figures import enlarged_crop
    from metrics.quality import psnr
    from evaluation.report import page_size, write_report
    from evaluation.results import results_document
    from evaluation import visuals
    from evaluation.visuals import Visuals

    img = synthetic_photo(512, 768, seed=40)
    decoded = baselines.code_image(img, "jpeg", 30)[1]  # a codec's output
    views = {}
    for fmt in ("light", "full"):
        v = Visuals(report=str(tmp_path / fmt), report_format=fmt)
        v._add_baseline("m", "jpeg", "a.png", img, decoded, 0.5, 30.0, 50)
        entry = v.images["a.png"]
        shown = entry["baselines"]["m"]["jpeg"]
        for pic, source in ((entry["original"], img), (shown, decoded)):
            crop = Image.open(tmp_path / fmt / pic.crop)
            assert pic.crop.endswith(".png") and np.array_equal(np.asarray(crop), np.asarray(enlarged_crop(source, entry["box"])))
            view = Image.open(tmp_path / fmt / pic.image).convert("RGB")
            assert pic.image.endswith(".jpg" if fmt == "light" else ".png")
            if fmt == "full":
                assert np.array_equal(np.asarray(view), np.asarray(source))
            else:
                assert psnr(to_tensor(source), to_tensor(view)) > 38.0
            views[fmt, pic.label] = (tmp_path / fmt / pic.image).stat().st_size
        (tmp_path / fmt / "assets" / "stale.png").write_bytes(b"x" * 10_000)  # not on the page: not counted
        entry["models"]["m"] = visuals.Shown("m", 0.5, 30.0, shown.image, shown.crop)  # the same files again
        page = write_report(v, results_document("TCM", "d", [{"bpp": 0.5, "psnr-rgb": 30.0}]), {}, ["jpeg"], None)
        size, files = page_size(page)
        shown_files = [page, *(tmp_path / fmt / p for e in (entry["original"], shown) for p in (e.image, e.crop))]
        assert files == 5 and size == sum(f.stat().st_size for f in shown_files)
    assert views["light", "original"] * 3 < views["full", "original"]
    assert "--report-format full" in (tmp_path / "light" / "index.html").read_text()


def test_images_that_share_a_stem_keep_their_own_pictures(tmp_path):
    """x.png and x.jpg (and a/y.png, b/y.png, "a b.png", "a_b.png"): a file each, each heading its own pictures."""
    from evaluation.report import write_report
    from evaluation.results import results_document
    from evaluation.visuals import Visuals, file_stems

    names = ["x.png", "x.jpg", "a/y.png", "b/y.png", "a b.png", "a_b.png", "X.png", "z.png"]
    stems = file_stems(names)
    assert stems["z.png"] == "z" and stems["x.png"] == "x-png" and stems["x.jpg"] == "x-jpg"
    assert len({s.lower() for s in stems.values()}) == len(names)  # apart on a case-insensitive disk too
    assert file_stems(names) == stems  # a resumed run finds the same files
    images = {n: synthetic_photo(64, 64, seed=50 + k) for k, n in enumerate(names[:2])}
    v = Visuals(recon=str(tmp_path / "recon"), report=str(tmp_path / "report"), report_format="full",
                image_names=list(images))
    for name, img in images.items():
        bits = np.zeros((128, 128), dtype=np.float32)
        row = {"bpp": 0.5, "psnr-rgb": 30.0, "bits-y": 1.0, "bits-z": 1.0}
        v.add_model("ck", name, img, row, {"x_hat": img, "padding": (32, 32, 32, 32), "bits_y": bits, "bits_z": bits})
    kept = sorted((tmp_path / "recon" / "ck").iterdir())
    assert [p.name for p in kept] == ["x-jpg.png", "x-png.png"]
    for path, name in zip(kept, ("x.jpg", "x.png")):
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(images[name]))
    page = write_report(v, results_document("m", "", [{"checkpoint": "ck", "bpp": 0.5, "psnr-rgb": 30.0}]), {}, [],
                        None).read_text()
    for name, img in images.items():
        section = page.split(f"<h3>{name}</h3>")[1].split("<h3>")[0]
        shown = re.findall(r'<img src="([^"]+)"', section)
        assert len(shown) >= 4  # original and reconstruction, their crops
        for src in shown[:2]:  # the full views under this heading are this image's
            assert np.array_equal(np.asarray(Image.open(tmp_path / "report" / src).convert("RGB")), np.asarray(img))
