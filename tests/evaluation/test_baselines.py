"""Classical codec sweeps (evaluation/baselines.py)."""

from __future__ import annotations

import pytest

from evaluation import baselines
from tests.helpers import synthetic_photo


@pytest.mark.parametrize("codec", [c for c in baselines.CODECS if c in baselines.available()])
def test_sweep_is_monotonic_in_rate(codec):
    images = [("a", synthetic_photo(176, 200, 0)), ("b", synthetic_photo(168, 170, 1))]
    points, per_image, skipped = baselines.sweep(images, codec, (90, 10, 50, 30, 70))
    assert skipped == {}
    assert [p["quality"] for p in points] == [10, 30, 50, 70, 90]
    bpp = [p["bpp"] for p in points]
    psnr = [p["psnr-rgb"] for p in points]
    ssim = [p["ms-ssim-rgb"] for p in points]
    assert all(a < b for a, b in zip(bpp, bpp[1:])), bpp
    assert all(a < b for a, b in zip(psnr, psnr[1:])), psnr
    assert all(a <= b for a, b in zip(ssim, ssim[1:])), ssim
    assert 0 < bpp[0] and psnr[0] > 15
    assert set(per_image) == {"10", "30", "50", "70", "90"} and len(per_image["50"]) == 2
    # The rate is the file's: bytes * 8 / pixels, per image, then averaged.
    data, dec, _, _ = baselines.code_image(images[0][1], codec, 50)
    assert per_image["50"][0]["bpp"] == pytest.approx(len(data) * 8 / (176 * 200))
    assert dec.size == (200, 176)


def test_unknown_codec_and_bad_qualities_are_refused():
    with pytest.raises(baselines.BaselineError, match="unknown baseline 'bpg'"):
        baselines.check_codecs(["jpeg", "bpg"])
    with pytest.raises(baselines.BaselineError, match="0 to 100"):
        baselines.check_qualities([50, 101])


@pytest.mark.skipif("webp" not in baselines.available(), reason="this Pillow has no WebP")
def test_an_image_a_codec_cannot_code_is_left_out_with_the_reason():
    """WebP refuses sides above 16383 pixels: that image is a note, the other images and codecs go on."""
    thin = synthetic_photo(1, 16384, seed=2)
    images = [("a", synthetic_photo(64, 80, 0)), ("thin", thin), ("b", synthetic_photo(72, 64, 1))]
    webp = baselines.sweep(images, "webp", (30, 70))
    assert set(webp.skipped) == {"thin"} and "16383" in webp.skipped["thin"] and "16384x1" in webp.skipped["thin"]
    assert [p["quality"] for p in webp.points] == [30, 70]
    assert all(sorted(r["image"] for r in rows) == ["a", "b"] for rows in webp.per_image.values())
    both = baselines.sweep([images[0], images[2]], "webp", (30, 70))  # the same points without the thin image
    for key in ("bpp", "psnr-rgb"):  # the same images, the same arithmetic
        assert [p[key] for p in webp.points] == [p[key] for p in both.points]
    jpeg = baselines.sweep(images, "jpeg", (30, 70))
    assert jpeg.skipped == {} and len(jpeg.per_image["30"]) == 3


@pytest.mark.parametrize("codec", [c for c in ("jpeg", "webp") if c in baselines.available()])
def test_chosen_qualities_span_the_models_points_so_the_curves_overlap(codec):
    """The default sweep (5..95) misses a low-rate model; the chosen one reaches below and above its points."""
    from evaluation.bd import bd_metrics
    from tests.helpers import rd_doc

    images = [("a", synthetic_photo(176, 200, 0)), ("b", synthetic_photo(168, 170, 1))]
    low = baselines.sweep(images, codec, (1,)).points[0]
    default = baselines.sweep(images, codec, baselines.DEFAULT_QUALITIES).points
    rates = [0.8 * low["bpp"] + 0.2 * default[0]["bpp"], default[0]["bpp"]]  # a model below the default sweep
    psnrs = [low["psnr-rgb"] + 0.3, default[0]["psnr-rgb"] + 0.2]
    chosen = baselines.spanning_qualities(images, codec, rates, psnrs)
    assert chosen == sorted(set(chosen)) and 2 <= len(chosen) <= baselines.SPANNING_POINTS
    points = baselines.sweep(images, codec, chosen).points
    assert points[0]["bpp"] <= min(rates) and points[0]["psnr-rgb"] <= min(psnrs)
    assert points[-1]["bpp"] >= max(rates) and points[-1]["psnr-rgb"] >= max(psnrs)
    model = rd_doc("model", rates, psnrs)
    spanned = bd_metrics(rd_doc(codec, [p["bpp"] for p in points], [p["psnr-rgb"] for p in points]), model)
    swept = bd_metrics(rd_doc(codec, [p["bpp"] for p in default], [p["psnr-rgb"] for p in default]), model)
    assert spanned["gap-points"] == 2 and spanned["overlap"] > swept["overlap"]
