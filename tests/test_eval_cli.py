"""eval.py: folders of images and checkpoints, outputs, a disagreeing decoder, bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import eval as ev
from evaluation.runner import EXIT_MISMATCH
from tests.helpers import ROOT, entropy_fitted_checkpoint, synthetic_photo, tiny_tcm


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return entropy_fitted_checkpoint(tmp_path_factory.mktemp("ck"))


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = ev.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _folder_with_bad_files(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    synthetic_photo(171, 203, seed=1).save(d / "odd.png")  # odd sides, MS-SSIM still defined
    gray16 = (np.linspace(0, 65535, 40 * 60).reshape(40, 60)).astype(np.uint16)
    Image.fromarray(gray16).save(d / "gray16.png")
    assert Image.open(d / "gray16.png").mode.startswith("I")
    synthetic_photo(30, 50, seed=2).convert("P").save(d / "palette.gif")
    rgba = synthetic_photo(50, 40, seed=4).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(d / "rgba.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.mark.slow
def test_folder_in_both_modes_with_bad_files_json_plot_baselines_and_sweep(tmp_path, trained, capsys):
    from compressai.utils.plot.__main__ import parse_json_file

    path, _ = trained
    data = _folder_with_bad_files(tmp_path)
    anchor = tmp_path / "anchor.json"
    anchor.write_text(json.dumps({"name": "Anchor", "results": {"bpp": [0.5, 2.0, 6.0], "psnr-rgb": [5.0, 9.0, 14.0]}}))
    out = tmp_path / "out" / "results.json"
    rc, stdout, err = run_cli(capsys, "--checkpoint", path, "--data", data, "--real", "--verbose",
                              "--output", out, "--plot", tmp_path / "rd.png", "--anchor", anchor,
                              "--baselines", "jpeg", "--baseline-qualities", "20", "60")
    assert rc == 0, err
    assert f"skipping {data / 'broken.png'}: not a readable image" in err
    assert f"skipping {data / 'notes.txt'}: not an image file" in err
    assert "alpha channel dropped" in err
    doc = json.loads(out.read_text())
    rows = {r["image"]: r for r in doc["per_image"]["tiny-trained"]}
    assert set(rows) == {"odd.png", "gray16.png", "palette.gif", "rgba.png"}
    assert (rows["odd.png"]["width"], rows["odd.png"]["height"]) == (203, 171)
    assert (rows["gray16.png"]["width"], rows["gray16.png"]["height"]) == (60, 40)
    assert all(r["decoded-size-ok"] and r["matches-encoder"] for r in rows.values())
    assert rows["odd.png"]["bpp-real"] == rows["odd.png"]["bytes"] * 8 / (171 * 203)
    assert rows["gray16.png"]["ms-ssim-rgb"] is None  # too small for MS-SSIM: null, not a number
    res = doc["results"]
    assert res["bpp"] == [pytest.approx(np.mean([r["bpp-real"] for r in rows.values()]))]
    assert res["mismatches"] == [0] and res["images"] == [4]
    assert "odd.png" in stdout and "tiny-trained" in stdout  # per-image rows and the averages table
    parsed = parse_json_file(out, "psnr")
    assert parsed["xs"] == res["bpp"] and parsed["ys"] == res["psnr-rgb"]
    jpeg = json.loads((out.parent / "results-jpeg.json").read_text())
    assert jpeg["results"]["quality"] == [20, 60] and jpeg["results"]["bpp"][0] < jpeg["results"]["bpp"][1]
    assert set(doc["bd"]) == {"Anchor", "JPEG (Pillow)"}
    assert Image.open(tmp_path / "rd.png").size[0] > 500

    # Estimated mode on the same folder, given as a sweep of two train.py runs, each with
    # its checkpoint_best (the same file name twice), and a release file beside them.
    sweep = tmp_path / "sweep"
    release = f"tcm-tiny-mse-0.02-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"
    sweep.mkdir()
    (sweep / f"{release}.pth.tar").write_bytes(path.read_bytes())
    for lam, seed in ((0.0035, 1), (0.013, 2)):
        run = sweep / f"mse_lambda_{lam}"
        run.mkdir()
        other = tiny_tcm(seed=seed)
        ck = {"state_dict": {f"module.{k}": v for k, v in other.state_dict().items()}, "epoch": 1,
              "optimizer": {}, "lambda": lam, "metric": "mse", "provenance": {"commit": "abc"}}
        torch.save(ck, run / "checkpoint_best.pth.tar")
        torch.save(ck, run / "checkpoint_latest.pth.tar")
    out2 = tmp_path / "estimated.json"
    rc, stdout, err = run_cli(capsys, "--checkpoint", sweep, "--data", data, "--output", out2)
    assert rc == 0, err
    doc2 = json.loads(out2.read_text())
    names = ["mse_lambda_0.0035", "mse_lambda_0.013", "tcm-tiny-mse-0.02"]
    assert sorted(doc2["per_image"]) == names
    assert all(len(rows) == 4 for rows in doc2["per_image"].values())  # every run keeps all its rows
    res = doc2["results"]
    assert res["bpp"] == sorted(res["bpp"]) and sorted(res["checkpoint"]) == names
    assert {n: lam for n, lam in zip(res["checkpoint"], res["lambda"])} == {
        "mse_lambda_0.0035": 0.0035, "mse_lambda_0.013": 0.013, "tcm-tiny-mse-0.02": 0.02}
    described = {c["name"]: c for c in doc2["checkpoints"]}
    assert described["mse_lambda_0.013"]["sha256"] == hashlib.sha256(
        (sweep / "mse_lambda_0.013" / "checkpoint_best.pth.tar").read_bytes()).hexdigest()
    assert described["mse_lambda_0.013"]["provenance"] == {"commit": "abc"}  # the run's, from train.py
    assert set(doc2["provenance"]) >= {"commit", "torch", "compressai", "device"}  # this evaluation's
    est = {r["image"]: r for r in doc2["per_image"]["tcm-tiny-mse-0.02"]}
    for name, row in rows.items():  # the same model, the same estimate in both modes
        assert est[name]["bpp-estimated"] == pytest.approx(row["bpp-estimated"], rel=1e-3)
        assert "bpp-real" not in est[name]


def test_a_decoder_that_disagrees_with_the_encoder_is_reported_per_image(tmp_path, trained, capsys, monkeypatch):
    from models.coding import Coder

    path, _ = trained
    data = tmp_path / "d"
    data.mkdir()
    synthetic_photo(64, 64, seed=5).save(data / "a.png")
    synthetic_photo(64, 64, seed=6).save(data / "b.png")
    decompress = Coder.decompress
    calls = []

    def faulty(self, strings, shape, **options):
        out = decompress(self, strings, shape, **options)
        calls.append(1)
        if len(calls) == 2:  # the second image decodes wrongly in one corner
            out["x_hat"][..., 60:80, 60:80] = 1 - out["x_hat"][..., 60:80, 60:80]
        return out

    monkeypatch.setattr(Coder, "decompress", faulty)
    out = tmp_path / "r.json"
    rc, _, err = run_cli(capsys, "--checkpoint", path, "--data", data, "--real", "--output", out)
    assert rc == EXIT_MISMATCH
    assert "MISMATCH tiny-trained b.png: decoded image differs from the encoder's reconstruction" in err
    assert "a.png" not in err.replace(str(data), "")
    doc = json.loads(out.read_text())
    flags = {r["image"]: r["matches-encoder"] for r in doc["per_image"]["tiny-trained"]}
    assert flags == {"a.png": True, "b.png": False}
    assert doc["results"]["mismatches"] == [1]


@pytest.mark.parametrize("tile, why", [("100", "tile side 100 is not a multiple of 128 in 128..32640"),
                                       ("32768", "tile side 32768 is not a multiple of 128 in 128..32640"),
                                       ("big", "not a number: 'big'")])
def test_tile_takes_the_sides_codec_py_takes(tile, why, capsys):
    assert ev.parse_args(["--checkpoint", "c", "--data", "d", "--tile", "256"]).tile == 256
    with pytest.raises(SystemExit) as e:
        ev.parse_args(["--checkpoint", "c", "--data", "d", "--tile", tile])
    assert e.value.code == 2 and capsys.readouterr().err == f"eval.py: error: argument --tile: {why} (see --help)\n"


def test_bad_input_is_a_one_line_error(tmp_path, trained, capsys):
    path, _ = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.png").write_bytes(b"junk")
    not_ck = tmp_path / "not_a_checkpoint.pth.tar"
    not_ck.write_bytes(b"junk")
    cases = [
        (["--checkpoint", tmp_path / "missing.pth.tar", "--data", empty], "checkpoint not found"),
        (["--checkpoint", not_ck, "--data", empty], "is not a checkpoint"),
        (["--checkpoint", path, "--data", empty], "no readable images"),
        (["--checkpoint", path, "--data", junk], "no readable images"),
        (["--checkpoint", path, "--data", tmp_path / "nowhere"], "data not found"),
        (["--checkpoint", path, "--data", junk, "--anchor", tmp_path / "none.json"], "results file not found"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--checkpoint", path, "--data", junk, "--cuda"], "no CUDA device"))
    for argv, message in cases:
        rc, out, err = run_cli(capsys, *argv, "--output", tmp_path / "o.json")
        lines = [line for line in err.splitlines() if not line.startswith("skipping")]
        assert rc == 1 and len(lines) == 1 and lines[0].startswith("eval.py: error: ") and message in lines[0], (argv, err)
        assert not (tmp_path / "o.json").exists()


@pytest.mark.slow
def test_coding_says_how_real_codes_and_the_results_say_it_too(tmp_path, trained, capsys):
    path, _ = trained
    data = tmp_path / "d"
    data.mkdir()
    synthetic_photo(64, 96, seed=7).save(data / "a.png")
    rc, _, err = run_cli(capsys, "--checkpoint", path, "--data", data, "--coding", "float64/bfloat16")
    assert rc == 2 and err.strip() == "eval.py: error: --coding is how --real codes: give --real too"
    docs = {}
    for argv in ([], ["--real"], ["--real", "--coding", "float64/bfloat16"], ["--real", "--coding", "float32/float32"]):
        out = tmp_path / f"r{len(docs)}.json"
        rc, _, err = run_cli(capsys, "--checkpoint", path, "--data", data, "--output", out, *argv)
        assert rc == 0, err
        docs[" ".join(argv)] = json.loads(out.read_text())
    assert [d["provenance"]["coding"] for d in docs.values()] == [None, "float32/float32", "float64/bfloat16",
                                                                  "float32/float32"]
    assert [d["coding"] for d in docs.values()] == [d["provenance"]["coding"] for d in docs.values()]
    assert "coding float64/bfloat16" in docs["--real --coding float64/bfloat16"]["description"]
    assert docs["--real"]["results"] == docs["--real --coding float32/float32"]["results"] | {
        k: docs["--real"]["results"][k] for k in ("encoding_time", "decoding_time")}  # the default is the paper's
    row = docs["--real --coding float64/bfloat16"]["per_image"]["tiny-trained"][0]
    assert row["matches-encoder"] and row["bytes"] > 0


@pytest.mark.slow
def test_command_line_error_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), "--checkpoint", str(tmp_path / "none.pth.tar"),
         "--data", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"eval.py: error: checkpoint not found: {tmp_path / 'none.pth.tar'}"]


def _two_images(folder):
    folder.mkdir()
    synthetic_photo(96, 160, seed=7).save(folder / "a.png")
    synthetic_photo(200, 136, seed=8).save(folder / "b.png")
    synthetic_photo(64, 64, seed=9).save(folder / "c.png")
    return folder


def _counting(monkeypatch, fail_at=None, error=KeyboardInterrupt):
    """Count evaluate_image calls; raise ``error`` on call number ``fail_at``."""
    import evaluation.runner as runner

    calls = []
    real = runner.evaluate_image

    def counted(*a, **kw):
        calls.append(a[1].size)
        if fail_at is not None and len(calls) == fail_at:
            raise error()
        return real(*a, **kw)

    monkeypatch.setattr(runner, "evaluate_image", counted)
    return calls


@pytest.mark.parametrize("extra, message", [
    (["--output", "{tmp}/file.txt/results.json"], "cannot write output"),
    (["--plot", "{tmp}/rd.xyz"], "matplotlib cannot write .xyz"),
    (["--plot", "{tmp}/file.txt/rd.png"], "cannot write plot"),
    (["--resume"], "--resume continues the rows kept beside --output"),
])
def test_outputs_are_checked_before_any_image(tmp_path, trained, capsys, monkeypatch, extra, message):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    calls = _counting(monkeypatch)
    argv = [a.format(tmp=tmp_path) for a in extra]
    rc, _, err = run_cli(capsys, "--checkpoint", trained[0], "--data", _two_images(tmp_path / "d"), *argv)
    assert rc in (1, 2) and calls == []
    assert err.strip().splitlines()[-1].startswith("eval.py: error: ") and message in err


@pytest.mark.slow
@pytest.mark.parametrize("error, status", [(KeyboardInterrupt, 130), ("Terminated", 143)])
def test_an_interrupted_evaluation_continues_with_resume(tmp_path, trained, capsys, monkeypatch, error, status):
    from utils.cli import Terminated

    error = Terminated if error == "Terminated" else error
    data, out = _two_images(tmp_path / "d"), tmp_path / "r.json"
    argv = ["--checkpoint", trained[0], "--data", data, "--real", "--output", out]
    calls = _counting(monkeypatch, fail_at=3, error=error)
    rc, _, err = run_cli(capsys, *argv)
    assert rc == status and not out.exists()
    assert "2 new image rows (2 in all) are kept in" in err and "--resume" in err
    monkeypatch.undo()
    calls = _counting(monkeypatch)
    rc, _, err = run_cli(capsys, *argv, "--resume")
    assert rc == 0 and calls == [(64, 64)]  # only the image that was not finished
    resumed = json.loads(out.read_text())
    assert not (tmp_path / "r.json.partial.jsonl").exists()
    rc, _, _ = run_cli(capsys, *argv)  # uninterrupted, from scratch
    whole = json.loads(out.read_text())
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("_time")} for r in rows]  # noqa: E731
    assert strip(resumed["per_image"]["tiny-trained"]) == strip(whole["per_image"]["tiny-trained"])


@pytest.mark.slow
def test_large_images_in_tiles_and_out_of_memory_in_one_line(tmp_path, trained, capsys, monkeypatch):
    from models.tcm import TCM

    data = _two_images(tmp_path / "d")
    out = tmp_path / "tiles.json"
    rc, _, err = run_cli(capsys, "--checkpoint", trained[0], "--data", data, "--real", "--tile", "128",
                         "--output", out)
    assert rc == 0, err
    rows = {r["image"]: r for r in json.loads(out.read_text())["per_image"]["tiny-trained"]}
    assert rows["b.png"]["tiles"] == 4 and "tiles" not in rows["c.png"]  # 256x256 padded: four tiles
    assert all(r["matches-encoder"] for r in rows.values())

    def no_memory(self, x):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 123456789 bytes")

    monkeypatch.setattr(TCM, "forward", no_memory)
    rc, _, err = run_cli(capsys, "--checkpoint", trained[0], "--data", data)
    lines = [line for line in err.splitlines() if line.startswith("eval.py")]
    assert rc == 1 and lines == ["eval.py: error: out of memory on a 160x96 image: evaluate it in tiles with "
                                 "--tile 1024"]


@pytest.mark.parametrize("force", [[], ["--force"]])
@pytest.mark.parametrize("option", ["--output", "--plot"])
def test_an_output_naming_an_input_is_refused_before_any_image(tmp_path, trained, capsys, monkeypatch, option, force):
    import evaluation.runner as runner

    data = _two_images(tmp_path / "d")
    ck = tmp_path / "mine.pth.tar"
    ck.write_bytes(trained[0].read_bytes())
    victim = ck if option == "--output" else data / "c.png"
    before = victim.read_bytes()
    calls = _counting(monkeypatch)
    loaded = []
    monkeypatch.setattr(runner, "load_checkpoints", lambda paths: loaded.append(paths))
    rc, _, err = run_cli(capsys, "--checkpoint", ck, "--data", data, option, victim, *force)
    assert rc == 1 and calls == [] and loaded == []
    assert err.strip().splitlines() == [f"eval.py: error: {option} {victim} is also an input: writing it would "
                                        "overwrite the input"]
    assert victim.read_bytes() == before


@pytest.mark.slow
def test_a_comparison_that_cannot_be_made_is_a_note_and_every_output_is_written(tmp_path, trained, capsys):
    """An anchor whose PSNR falls at its highest rate: BD-rate null with the reason, results and plot written."""
    from tests.helpers import codec_checkpoint

    other = codec_checkpoint(tmp_path / "other.pth.tar", seed=4)
    anchor = tmp_path / "anchor.json"
    anchor.write_text(json.dumps({"name": "Anchor", "results": {"bpp": [0.01, 0.1, 10.0], "psnr-rgb": [5.0, 50.0, 1.0]}}))
    data = tmp_path / "d"
    data.mkdir()
    synthetic_photo(64, 64, seed=5).save(data / "a.png")
    out, plot = tmp_path / "r.json", tmp_path / "rd.png"
    rc, stdout, err = run_cli(capsys, "--checkpoint", trained[0], other, "--data", data, "--output", out,
                              "--plot", plot, "--anchor", anchor)
    assert rc == 0, err
    fig = json.loads(out.read_text())["bd"]["Anchor"]
    assert fig["bd-rate"] is None and "Anchor's psnr-rgb 1.000 at 10.000 bpp" in fig["note"]
    assert "Anchor: " in stdout and "must rise with rate" in stdout
    assert Image.open(plot).size[0] > 500


@pytest.mark.parametrize("anchor_text, message", [
    (json.dumps({"name": "A", "results": {"bpp": ["0.1", "0.5"], "psnr-rgb": [30.0, 33.0]}}), "'bpp' holds \"0.1\""),
    ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
])
def test_a_bad_anchor_is_refused_in_one_line_before_any_image(tmp_path, trained, capsys, monkeypatch,
                                                              anchor_text, message):
    anchor = tmp_path / "anchor.json"
    anchor.write_text(anchor_text)
    calls = _counting(monkeypatch)
    rc, _, err = run_cli(capsys, "--checkpoint", trained[0], "--data", _two_images(tmp_path / "d"),
                         "--anchor", anchor, "--output", tmp_path / "r.json")
    assert rc == 1 and calls == [] and not (tmp_path / "r.json").exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eval.py: error: ") and str(anchor) in lines[0], err
    assert message in lines[0]


@pytest.mark.slow
def test_an_image_a_baseline_cannot_code_is_skipped_for_that_baseline_only(tmp_path, trained, capsys):
    """WebP's 16383-pixel limit: a 16384x1 image is left out of WebP with a note; JPEG and the model code it."""
    data = tmp_path / "d"
    data.mkdir()
    synthetic_photo(64, 64, seed=5).save(data / "a.png")
    synthetic_photo(1, 16384, seed=6).save(data / "thin.png")
    out = tmp_path / "r.json"
    rc, _, err = run_cli(capsys, "--checkpoint", trained[0], "--data", data, "--output", out,
                         "--baselines", "webp", "jpeg", "--baseline-qualities", "30", "70",
                         "--save-recon", tmp_path / "recon")
    assert rc == 0, err
    assert "note: thin.png left out of the webp baseline: WebP (Pillow) cannot code this 16384x1 image" in err
    doc = json.loads(out.read_text())
    assert set(doc["baselines-skipped"]) == {"webp"} and "16383" in doc["baselines-skipped"]["webp"]["thin.png"]
    assert {r["image"] for r in doc["per_image"]["tiny-trained"]} == {"a.png", "thin.png"}
    webp = json.loads((tmp_path / "r-webp.json").read_text())
    assert list(webp["skipped"]) == ["thin.png"] and webp["results"]["quality"] == [30, 70]
    assert all([r["image"] for r in rows] == ["a.png"] for rows in webp["per_image"].values())
    jpeg = json.loads((tmp_path / "r-jpeg.json").read_text())
    assert "skipped" not in jpeg and all(len(rows) == 2 for rows in jpeg["per_image"].values())
    assert set(doc["matched"]["tiny-trained"]["webp"]) == {"a.png"}
    assert set(doc["matched"]["tiny-trained"]["jpeg"]) == {"a.png", "thin.png"}


@pytest.mark.slow
def test_resume_reuses_a_row_only_for_the_same_pixels(tmp_path, trained, capsys, monkeypatch):
    """Other images under the same names are evaluated again, and said so; the same pixels re-saved are not."""
    from PIL import PngImagePlugin

    def pixel(folder, name, rgb, **save):
        folder.mkdir(exist_ok=True)
        Image.new("RGB", (1, 1), rgb).save(folder / name, **save)

    first, other = tmp_path / "first", tmp_path / "other"
    for name, rgb in (("a.png", (10, 20, 30)), ("b.png", (40, 50, 60)), ("c.png", (70, 80, 90))):
        pixel(first, name, rgb)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "saved again")
    pixel(other, "a.png", (10, 20, 30), compress_level=0, pnginfo=info)  # other bytes, the same pixels
    pixel(other, "b.png", (200, 100, 50))  # another image under the same name
    pixel(other, "c.png", (70, 80, 90))
    assert (first / "a.png").read_bytes() != (other / "a.png").read_bytes()
    out = tmp_path / "r.json"
    argv = ["--checkpoint", trained[0], "--output", out, "--verbose"]
    _counting(monkeypatch, fail_at=3)
    rc, _, err = run_cli(capsys, *argv, "--data", first)  # interrupted: rows of a.png and b.png kept
    assert rc == 130 and "2 new image rows" in err
    monkeypatch.undo()
    calls = _counting(monkeypatch)
    rc, _, err = run_cli(capsys, *argv, "--data", other, "--resume")
    assert rc == 0, err
    assert len(calls) == 2  # b.png (other pixels) and c.png (never done); a.png reused
    assert "1 rows resumed" in err and "note: b.png: the rows kept under this name were of other pixels" in err
    resumed = {r["image"]: r for r in json.loads(out.read_text())["per_image"]["tiny-trained"]}
    rc, _, _ = run_cli(capsys, *argv, "--data", other)  # from scratch
    fresh = {r["image"]: r for r in json.loads(out.read_text())["per_image"]["tiny-trained"]}
    for name in ("a.png", "b.png", "c.png"):
        assert resumed[name]["psnr-rgb"] == fresh[name]["psnr-rgb"], name
        assert resumed[name]["bpp"] == fresh[name]["bpp"], name
