"""codec.py: the command line, refusals, atomic outputs and a fuzz batch of damaged files."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import codec
from file_codec import Codec, container, default_transforms
from file_codec.files import CHECKPOINT_ENV
from tests.helpers import ROOT, codec_checkpoint, noise_image, refix_crc


@pytest.fixture(scope="module")
def ck(tmp_path_factory) -> Path:
    return codec_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pth")


@pytest.fixture(scope="module")
def other_ck(tmp_path_factory) -> Path:
    return codec_checkpoint(tmp_path_factory.mktemp("ck") / "other.pth.tar", seed=1, training=True)


@pytest.fixture(scope="module")
def tcm(ck) -> Codec:
    return Codec.load(ck, f"float64/{default_transforms()}")  # what codec.py uses by default


def header_len(data: bytes) -> int:
    return container.header_size(container.parse(data)[0])


@pytest.fixture(scope="module")
def small(tcm) -> tuple[Image.Image, bytes]:
    """A 30x20 image and its file, shared by the tests that only need some valid file."""
    image = noise_image(20, 30, seed=11)
    return image, tcm.encode(image)


def write_mode_images(folder: Path) -> dict[str, tuple[int, int]]:
    """Images in the modes Pillow reads, and the (width, height) the codec must give back."""
    folder.mkdir()
    rgb = noise_image(37, 53, seed=5)
    rgb.convert("L").save(folder / "gray.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "alpha.png")
    deep = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    assert deep.mode == "I;16"
    deep.save(folder / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    rgb.save(folder / "rotated.jpg", exif=exif)
    return {"gray": (53, 37), "palette": (53, 37), "alpha": (53, 37), "deep": (53, 37), "rotated": (37, 53)}


@pytest.mark.slow
def test_image_modes_through_the_command_line(ck, tmp_path, capsys):
    sizes = write_mode_images(tmp_path / "in")
    inputs = sorted(str(p) for p in (tmp_path / "in").iterdir())
    assert codec.main(["compress", *inputs, str(tmp_path / "tcm"), "--checkpoint", str(ck)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    # what each conversion loses is said once, for that file only
    assert err == [f"note: {tmp_path / 'in' / 'alpha.png'}: alpha channel dropped",
                   f"note: {tmp_path / 'in' / 'deep.png'}: 16-bit samples reduced to 8 bits"]
    assert sorted(p.name for p in (tmp_path / "tcm").iterdir()) == sorted(f"{k}.tcm" for k in sizes)
    for name, (width, height) in sizes.items():
        header, _ = container.parse((tmp_path / "tcm" / f"{name}.tcm").read_bytes())
        assert (header.width, header.height) == (width, height), name
    # decoding gives the header's size (the round trips check that); decode two of them here
    files = [str(tmp_path / "tcm" / f"{k}.tcm") for k in ("rotated", "alpha")]
    assert codec.main(["decompress", *files, str(tmp_path / "out"), "-c", str(ck)]) == 0
    assert Image.open(tmp_path / "out" / "rotated.png").size == sizes["rotated"]
    assert Image.open(tmp_path / "out" / "alpha.png").mode == "RGB"


def test_a_colour_profile_is_converted_to_srgb_and_said(ck, tcm, tmp_path, capsys):
    """A Display P3 image is coded as the sRGB colours a colour-managed viewer shows, not its raw values."""
    import io

    from PIL import ImageCms

    from tests.colour_profiles import matrix_profile

    p3 = matrix_profile("Display P3")
    image = noise_image(20, 30, seed=6)
    image.save(tmp_path / "p3.png", icc_profile=p3)
    assert codec.main(["compress", str(tmp_path / "p3.png"), str(tmp_path / "p3.tcm"), "-c", str(ck)]) == 0
    assert capsys.readouterr().err.strip() == f"note: {tmp_path / 'p3.png'}: colour profile 'Display P3' converted to sRGB"
    srgb = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(p3)), ImageCms.createProfile("sRGB"))
    assert (tmp_path / "p3.tcm").read_bytes() == tcm.encode(srgb) != tcm.encode(image)


def test_a_decoded_file_says_it_holds_srgb(ck, tmp_path, small):
    """PNG's sRGB chunk; JPEG, TIFF and WebP carry an sRGB profile, which reading takes as no change."""
    import io
    import warnings

    from PIL import ImageCms

    from datasets import open_rgb

    (tmp_path / "a.tcm").write_bytes(small[1])
    for name in ("a.png", "a.jpg", "a.tif", "a.webp"):
        assert codec.main(["decompress", str(tmp_path / "a.tcm"), str(tmp_path / name), "-c", str(ck), "-q"]) == 0
        decoded = Image.open(tmp_path / name)
        if name == "a.png":
            assert decoded.info["srgb"] == 0 and "icc_profile" not in decoded.info  # perceptual intent
        else:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(decoded.info["icc_profile"]))
            assert ImageCms.getProfileDescription(profile).strip() == "sRGB built-in", name
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # read back without a note
            assert np.array_equal(np.asarray(open_rgb(tmp_path / name)), np.asarray(decoded.convert("RGB"))), name


def test_compress_refuses_an_image_over_max_pixels_saying_what_it_would_take(ck, tmp_path, capsys, monkeypatch):
    """Before its pixels are decoded; the image is held whole at 4 bytes a pixel (docs/format.md, Memory)."""
    from PIL import ImageFile

    noise_image(20, 30).save(tmp_path / "a.png")
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixels decoded"))
    assert codec.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "a.tcm"), "-c", str(ck),
                       "--max-pixels", "599"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"codec.py: error: {tmp_path / 'a.png'}: image of 30x20, 600 pixels, over the limit of 599: holding it would "
        "take 0.00 GiB beside the model and one tile; if that fits, pass --max-pixels 600")
    assert not (tmp_path / "a.tcm").exists()
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    assert codec.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "a.tcm"), "-c", str(ck), "-q",
                       "--max-pixels", "600"]) == 0
    assert container.parse((tmp_path / "a.tcm").read_bytes())[0].width == 30


def test_the_default_max_pixels_of_compress_is_decompress_s(tmp_path):
    from file_codec.settings import image_memory

    for command in ("compress", "decompress"):
        args = codec.build_parser().parse_args([command, "x", "y"])
        assert args.max_pixels == container.DEFAULT_MAX_PIXELS == 2**26
    assert image_memory(9000 * 9000) == "0.30 GiB" and image_memory(2**26) == "0.25 GiB"


def test_single_input_writes_out_as_a_file(ck, tmp_path, capsys, small):
    small[0].save(tmp_path / "a.png")
    assert codec.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "a.bin"), "-c", str(ck)]) == 0
    assert (tmp_path / "a.bin").read_bytes() == small[1]
    assert codec.main(["decompress", str(tmp_path / "a.bin"), str(tmp_path / "b.bmp"), "-c", str(ck)]) == 0
    with Image.open(tmp_path / "b.bmp") as im:
        assert im.format == "BMP" and im.size == (30, 20)
    assert codec.main(["info", str(tmp_path / "a.bin")]) == 0
    out = capsys.readouterr().out
    assert "30x20" in out and Codec.load(ck).id_hex in out and "format version  4" in out
    assert "entropy path    float64 (decodes on other machines)" in out and Codec.load(ck).tables_id.hex() in out
    header = container.parse(small[1])[0]
    assert "padding         replicate: left 49, right 49, top 54, bottom 54 (coded 128x128)" in out
    assert f"tile crcs       {header.tile_crcs[0]:08x}\n" in out and "latent crc" not in out


@pytest.mark.slow
def test_max_pixels_bounds_what_decompress_decodes_and_info_reports_it(ck, tmp_path, capsys, small):
    (tmp_path / "a.tcm").write_bytes(small[1])  # 30x20: 600 pixels
    out = tmp_path / "a.png"
    assert codec.main(["decompress", str(tmp_path / "a.tcm"), str(out), "-c", str(ck), "--max-pixels", "599"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "30x20 image, 600 pixels, over the limit of 599" in err[0] and "--max-pixels 600" in err[0]
    assert "(decoding it would take 0.00 GiB beside the model and one tile)" in err[0]
    assert not out.exists()
    assert codec.main(["decompress", str(tmp_path / "a.tcm"), str(out), "-c", str(ck), "--max-pixels", "600"]) == 0
    assert Image.open(out).size == (30, 20)
    # by default 2**26: a file claiming one row more than 8192x8192 is refused, and info says what it needs
    tcm = Codec.load(ck)
    header = container.Header(tcm.weights_id, 8193, 8192, 63, 0, 2048, tables_id=tcm.tables_id, tile_crcs=[0] * 20)
    (tmp_path / "big.tcm").write_bytes(container.pack(header, [(bytes(8), bytes(8))] * 20))
    assert codec.main(["info", str(tmp_path / "big.tcm")]) == 0
    assert f"image size      8192x8193 ({8192 * 8193} pixels: decompressing needs --max-pixels {8192 * 8193})" in (
        capsys.readouterr().out)
    assert codec.main(["decompress", str(tmp_path / "big.tcm"), str(out), "-c", str(ck)]) == 1
    assert f"over the limit of {2**26}" in capsys.readouterr().err
    for bad, message in (("0", "0 is not a positive number of pixels"), ("many", "not a number: 'many'")):
        with pytest.raises(SystemExit) as e:
            codec.main(["decompress", str(tmp_path / "a.tcm"), str(out), "--max-pixels", bad])
        assert e.value.code == 2 and message in capsys.readouterr().err


# ------------------------------------------------------------------ weights
def test_other_weights_refused_naming_both(ck, other_ck, tmp_path, capsys, small):
    (tmp_path / "a.tcm").write_bytes(small[1])
    assert codec.main(["decompress", str(tmp_path / "a.tcm"), str(tmp_path / "a.png"), "-c", str(other_ck)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    ids = Codec.load(ck).id_hex, Codec.load(other_ck).id_hex
    assert len(err) == 1 and all(i in err[0] for i in ids)
    assert not (tmp_path / "a.png").exists()


@pytest.mark.slow
def test_decompress_without_checkpoint_names_the_weights(ck, tmp_path, capsys, monkeypatch, small):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    (tmp_path / "a.tcm").write_bytes(small[1])
    assert codec.main(["decompress", str(tmp_path / "a.tcm"), str(tmp_path / "b.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and Codec.load(ck).id_hex in err[0] and "--checkpoint" in err[0]
    assert not (tmp_path / "b.png").exists()
    monkeypatch.setenv(CHECKPOINT_ENV, str(ck))
    assert codec.main(["decompress", str(tmp_path / "a.tcm"), str(tmp_path / "b.png")]) == 0
    assert Image.open(tmp_path / "b.png").size == small[0].size


# ------------------------------------------------------------------ outputs
@pytest.mark.slow
def test_existing_output_replaced_only_by_a_complete_one(ck, tmp_path, monkeypatch, capsys, small):
    small[0].save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "out.tcm"
    out.write_bytes(b"precious")
    assert codec.main(["compress", str(tmp_path / "bad.png"), str(out), "-c", str(ck)]) == 1
    assert out.read_bytes() == b"precious"
    assert codec.main(["compress", str(tmp_path / "good.png"), str(out), "-c", str(ck)]) == 0
    assert out.read_bytes() == small[1]

    def broken_save(self, fp, *args, **kwargs):  # dies half-way through writing
        fp.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    png = tmp_path / "out.png"
    png.write_bytes(b"old picture")
    monkeypatch.setattr(Image.Image, "save", broken_save)
    assert codec.main(["decompress", str(out), str(png), "-c", str(ck)]) == 1
    assert png.read_bytes() == b"old picture"
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png", "good.png", "out.png", "out.tcm"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "bad.png" in err[0] and "No space left" in err[1]
    assert err[1].endswith(f"No space left on device: {png}")  # the output's name, not its temporary file


def test_batch_goes_on_after_failures(ck, tmp_path, capsys):
    for name in ("a", "b"):
        noise_image(20, 30, seed=ord(name)).save(tmp_path / f"{name}.png")
    (tmp_path / "c.png").write_bytes(b"")
    inputs = [tmp_path / "a.png", tmp_path / "c.png", tmp_path / "missing.png", tmp_path / "b.png"]
    assert codec.main(["compress", *map(str, inputs), str(tmp_path / "out"), "-c", str(ck), "--entropy", "float64"]) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.tcm", "b.tcm"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "c.png" in err[0] and "missing.png" in err[1]


def test_an_out_ending_in_a_slash_is_a_folder(ck, tmp_path, small):
    small[0].save(tmp_path / "a.png")
    assert codec.main(["compress", str(tmp_path / "a.png"), f"{tmp_path / 'new'}/", "-c", str(ck)]) == 0
    assert (tmp_path / "new" / "a.tcm").read_bytes() == small[1]


def test_output_never_overwrites_its_input(ck, tmp_path, capsys, small):
    (tmp_path / "a.tcm").write_bytes(small[1])
    assert codec.main(["decompress", str(tmp_path / "a.tcm"), str(tmp_path / "a.tcm"), "-c", str(ck)]) == 1
    assert (tmp_path / "a.tcm").read_bytes() == small[1]
    assert "overwrite the input" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["compress"], ["decompress", "x.tcm"], ["info"], ["compress", "a.png", "b", "--tile", "100"], ["nope"],
     ["compress", "a.png", "b", "--transforms", "float16"], ["decompress", "a.tcm", "b", "--max-pixels", "0"]],
)
def test_usage_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        codec.main(argv)
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.slow
def test_transforms_is_what_the_codec_runs(ck, tmp_path, capsys, small):
    """--transforms float32|bfloat16: the file and the decoded image are the Codec's with those transforms."""
    small[0].save(tmp_path / "a.png")
    (tmp_path / "small.tcm").write_bytes(small[1])
    for transforms in ("float32", "bfloat16"):
        expected = Codec.load(ck, f"float64/{transforms}")
        out, png = tmp_path / f"{transforms}.tcm", tmp_path / f"{transforms}.png"
        assert codec.main(["compress", str(tmp_path / "a.png"), str(out), "-c", str(ck), "-q",
                           "--transforms", transforms]) == 0
        assert out.read_bytes() == expected.encode(small[0])
        assert codec.main(["decompress", str(tmp_path / "small.tcm"), str(png), "-c", str(ck), "-q",
                           "--transforms", transforms]) == 0
        with Image.open(png) as decoded:
            assert decoded.tobytes() == expected.decode(small[1]).tobytes()
    assert capsys.readouterr() == ("", "")


def test_bad_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "ck.pth").write_bytes(b"junk")
    noise_image(8, 8).save(tmp_path / "a.png")
    assert codec.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "a.tcm"), "-c", str(tmp_path / "ck.pth")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"codec.py: error: {tmp_path / 'ck.pth'} is not a checkpoint (not a file torch.save writes)"]
    assert not (tmp_path / "a.tcm").exists()


# ------------------------------------------------------------------ fuzz
def mutants(valid: bytes, other_weights: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, expected stage): 'parse' (refused before any decoding), 'weights' or
    'tables' (refused by an id) or 'decoder' (reaches the rANS decoder, refused by the latent CRC
    or where a stream runs out)."""
    rng = random.Random(1234)
    n = header_len(valid)
    header, streams = container.parse(valid)
    (z_len, y_len), = header.lengths
    cases: dict[str, tuple[bytes, str]] = {"empty": (b"", "parse")}
    cuts = set(range(n + 2)) | {n + z_len - 1, n + z_len, n + z_len + 1, len(valid) - 1, len(valid) // 2}
    cuts |= {rng.randrange(n, len(valid)) for _ in range(30)}
    for k in sorted(cuts):
        cases[f"cut{k:06d}"] = (valid[:k], "parse")
    for i in range(120):
        b = bytearray(valid)
        b[rng.randrange(len(b))] ^= rng.randrange(1, 256)
        cases[f"byte{i:03d}"] = (bytes(b), "parse")
    for i in range(60):
        b = bytearray(valid)
        bit = rng.randrange(8 * len(b))
        b[bit // 8] ^= 1 << (bit % 8)
        cases[f"bit{i:03d}"] = (bytes(b), "parse")
    for pos in range(n):  # every header byte set to 0x00 and 0xff, checksum left stale
        for v in (0x00, 0xFF):
            if valid[pos] != v:
                cases[f"head{pos:02d}_{v:02x}"] = (valid[:pos] + bytes([v]) + valid[pos + 1 :], "parse")
    for v in (0, 5, 9, 255):  # other format versions, checksum made valid
        cases[f"version{v}"] = (refix_crc(valid[:4] + bytes([v]) + valid[5:], n), "parse")
    cases["weights"] = (refix_crc(valid[:5] + other_weights + valid[11:], n), "weights")
    cases["tables"] = (refix_crc(valid[:11] + bytes(b ^ 0x5A for b in valid[11:15]) + valid[15:], n), "tables")
    cases["path"] = (refix_crc(valid[:15] + b"\x07" + valid[16:], n), "parse")
    cases["padding"] = (refix_crc(valid[:16] + b"\x07" + valid[17:], n), "parse")
    # header edits that leave a valid geometry: the other path, the other padding, 100 -> 99 rows (the
    # same centred padding); and one that shifts the image: a top padding one row larger
    cases["path_float32"] = (refix_crc(valid[:15] + b"\x00" + valid[16:], n), "decoder")
    cases["padding_zero"] = (refix_crc(valid[:16] + b"\x00" + valid[17:], n), "decoder")
    cases["height99"] = (refix_crc(valid[:17] + bytes([99]) + valid[18:], n), "decoder")
    cases["pad_top"] = (refix_crc(valid[:19] + bytes([valid[19] + 1]) + valid[20:], n), "parse")
    cases["trailing"] = (valid + b"\0", "parse")
    cases["twice"] = (valid + valid, "parse")
    for i in range(30):
        cases[f"random{i:02d}"] = (rng.randbytes(rng.randrange(1, 3000)), "parse")
        cases[f"magic{i:02d}"] = (container.MAGIC + b"\x01" + rng.randbytes(rng.randrange(0, 3000)), "parse")
    cases["png"] = (b"\x89PNG\r\n\x1a\n" + rng.randbytes(200), "parse")
    # crafted: payload edited and the file checksum recomputed, so the edit reaches the decoder
    for i in range(3):
        b = bytearray(valid)
        b[n + z_len + rng.randrange(3 * y_len // 4)] ^= rng.randrange(1, 256)
        cases[f"crafted_y{i}"] = (refix_crc(bytes(b), n), "decoder")
    for i in range(1):
        b = bytearray(valid)
        b[n + rng.randrange(3 * z_len // 4)] ^= rng.randrange(1, 256)
        cases[f"crafted_z{i}"] = (refix_crc(bytes(b), n), "decoder")
    b = bytearray(valid)
    b[n - 5] ^= 0x40  # the latent checksum itself
    cases["crafted_latent_crc"] = (refix_crc(bytes(b), n), "decoder")
    # a size whose padded size differs: the same streams decoded on a larger grid
    wide = container.pack(container.Header(header.weights_id, header.height, 200, header.pad_top, 28,
                                           header.tile, tables_id=header.tables_id, entropy=header.entropy,
                                           padding_mode=header.padding_mode, tile_crcs=header.tile_crcs), streams)
    cases["crafted_size"] = (wide, "decoder")
    return cases


@pytest.mark.slow
def test_fuzz_batch_fails_cleanly_and_leaves_no_output(ck, other_ck, tcm, tmp_path):
    valid = tcm.encode(noise_image(100, 100, seed=9))
    edited = (container.VERSION, bytes([1, container.PAD_REPLICATE, 100, 100, 14]))  # the bytes the mutants edit
    assert (valid[4], valid[15:20]) == edited
    cases = mutants(valid, Codec.load(other_ck).weights_id)
    (tmp_path / "in").mkdir()
    for name, (data, _) in cases.items():
        (tmp_path / "in" / f"{name}.tcm").write_bytes(data)
    (tmp_path / "in" / "valid.tcm").write_bytes(valid)
    (tmp_path / "in" / "folder.tcm").mkdir()
    files = sorted((tmp_path / "in").iterdir())
    out = tmp_path / "out"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "codec.py"), "decompress", *map(str, files), str(out), "-c", str(ck), "-q"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    by_file = {line.split(": ")[2]: line for line in lines}
    assert len(lines) == len(by_file) == len(cases) + 1  # one line per bad input (and the folder)
    assert sorted(p.name for p in out.iterdir()) == ["valid.png"]  # nothing else, no temporary files
    for name, (_, stage) in cases.items():
        line = by_file[str(tmp_path / "in" / f"{name}.tcm")]
        if stage == "decoder":
            assert "latent checksum mismatch" in line or "ends before its symbols do" in line, line
        elif stage == "weights":
            assert "made with weights" in line, line
        elif stage == "tables":
            assert "made with coding tables" in line, line
        else:
            assert "latent checksum" not in line and "symbols do" not in line and "made with" not in line, line
    stages = [s for _, s in cases.values()]
    by_id = stages.count("weights") + stages.count("tables")
    print(f"\nfuzz: {len(cases)} mutants in {elapsed:.1f} s: {stages.count('parse')} refused by the container "
          f"checks, {by_id} by the weights and tables ids, {stages.count('decoder')} decoded and refused "
          f"by a latent checksum or a stream that runs out")


# ------------------------------------------------------------------ what a run reports
@pytest.mark.slow
def test_one_line_per_file_done_and_quiet(ck, tmp_path, capsys, small):
    small[0].save(tmp_path / "a.png")
    small[0].save(tmp_path / "b.png")
    assert codec.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "b.png"), str(tmp_path / "t"),
                       "-c", str(ck)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    walls = []
    for name, line in zip("ab", lines):
        size = len(small[1])
        head = f"{tmp_path / f'{name}.png'} -> {tmp_path / 't' / f'{name}.tcm'}: {size} bytes, {8 * size / 600:.4f} bpp"
        m = re.fullmatch(re.escape(head) + r", coding (\d+\.\d\d) s, wall (\d+\.\d\d) s", line)
        assert m, line
        assert float(m[1]) <= float(m[2])  # the wall time counts the start-up of the process too
        walls.append(float(m[2]))
    assert walls[0] <= walls[1]
    assert codec.main(["decompress", str(tmp_path / "t" / "a.tcm"), str(tmp_path / "a2.png"), "-c", str(ck)]) == 0
    line, = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(re.escape(f"{tmp_path / 't' / 'a.tcm'} -> {tmp_path / 'a2.png'}: 30x20, ")
                        + r"\d+\.\d{4} bpp, coding \d+\.\d\d s, wall \d+\.\d\d s", line), line
    for argv in (["compress", str(tmp_path / "a.png"), str(tmp_path / "t" / "a.tcm")],
                 ["decompress", str(tmp_path / "t" / "a.tcm"), str(tmp_path / "a2.png")]):
        assert codec.main([*argv, "-c", str(ck), "-q"]) == 0
        assert capsys.readouterr() == ("", "")


def test_info_reads_headers_without_torch(tmp_path, small):
    (tmp_path / "a.tcm").write_bytes(small[1])
    proc = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "codec.py"), "info", str(tmp_path / "a.tcm")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "image size      30x20" in proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "PIL" in imported  # the listing is there
    assert not {"torch", "compressai", "numpy"} & imported


def test_info_reads_only_the_magic_bytes_of_a_file_that_is_not_one(tmp_path, monkeypatch, capsys):
    """A 64 MiB file of something else: refused after its first 4 bytes (it read up to 512 MB first)."""
    import file_codec.files as files

    big = tmp_path / "movie.tcm"
    with open(big, "wb") as f:
        f.truncate(64 << 20)
    read = []

    class Counted:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            data = self.f.read(n)
            read.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    real_open = files.open_regular_file
    monkeypatch.setattr(files, "open_regular_file", lambda path: Counted(real_open(path)))
    assert codec.main(["info", str(big)]) == 1
    assert capsys.readouterr().err.strip() == f"codec.py: error: {big}: not a TCM file (bad magic bytes)"
    assert sum(read) == len(container.MAGIC)


def _coded(monkeypatch) -> list:
    """Each image the codec encodes or file it decodes, as they are coded."""
    calls = []
    for name in ("encode", "decode"):
        real = getattr(Codec, name)

        def counted(self, data, real=real, name=name):
            calls.append(name)
            return real(self, data)

        monkeypatch.setattr(Codec, name, counted)
    return calls


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_a_read_only_output_folder_is_refused_before_any_image_is_coded(ck, tmp_path, monkeypatch, capsys, small,
                                                                        command):
    """The folder refuses new files (as a read-only one does, for root too): one line, nothing coded."""
    import errno
    import tempfile

    small[0].save(tmp_path / "a.png")
    small[0].save(tmp_path / "b.png")
    (tmp_path / "a.tcm").write_bytes(small[1])
    (tmp_path / "b.tcm").write_bytes(small[1])
    out = tmp_path / "read-only"
    out.mkdir()
    real_mkstemp = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    coded = _coded(monkeypatch)
    suffix = ".png" if command == "compress" else ".tcm"
    argv = [command, str(tmp_path / f"a{suffix}"), str(tmp_path / f"b{suffix}"), str(out), "-c", str(ck)]
    assert codec.main(argv) == 1
    assert capsys.readouterr().err.strip() == f"codec.py: error: cannot write into output folder {out}: " \
                                               "Read-only file system"
    assert coded == [] and list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a folder whatever its permissions")
def test_a_folder_without_write_permission_is_refused_before_any_image_is_coded(ck, tmp_path, monkeypatch, capsys,
                                                                                 small):
    small[0].save(tmp_path / "a.png")
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o555)
    coded = _coded(monkeypatch)
    try:
        assert codec.main(["compress", str(tmp_path / "a.png"), f"{out}/", "-c", str(ck)]) == 1
    finally:
        out.chmod(0o755)
    assert capsys.readouterr().err.strip() == f"codec.py: error: cannot write into output folder {out}: " \
                                               "Permission denied"
    assert coded == []


# ------------------------------------------------------------------ files that are not regular files
def test_info_refuses_fifos_and_devices_at_once(tmp_path, small):
    os.mkfifo(tmp_path / "fifo.tcm")
    (tmp_path / "a.tcm").write_bytes(small[1])
    inputs = [tmp_path / "fifo.tcm", Path("/dev/zero"), tmp_path, tmp_path / "a.tcm"]
    proc = subprocess.run([sys.executable, str(ROOT / "codec.py"), "info", *map(str, inputs)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "image size      30x20" in proc.stdout
    assert proc.stderr.strip().splitlines() == [
        f"codec.py: error: {tmp_path / 'fifo.tcm'}: is a FIFO (named pipe), not a regular file",
        "codec.py: error: /dev/zero: is a character device, not a regular file",
        f"codec.py: error: {tmp_path}: is a folder, not a regular file",
    ]


@pytest.mark.slow
def test_compress_and_decompress_refuse_fifos_and_devices(ck, tmp_path, small):
    os.mkfifo(tmp_path / "fifo.png")
    os.mkfifo(tmp_path / "fifo.tcm")
    small[0].save(tmp_path / "a.png")
    (tmp_path / "a.tcm").write_bytes(small[1])
    cases = {"compress": [tmp_path / "fifo.png", Path("/dev/zero"), tmp_path / "a.png"],
             "decompress": [tmp_path / "fifo.tcm", Path("/dev/zero"), tmp_path / "a.tcm"]}
    for command, inputs in cases.items():
        out = tmp_path / f"out-{command}"
        proc = subprocess.run([sys.executable, str(ROOT / "codec.py"), command, *map(str, inputs), str(out),
                               "-c", str(ck)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"codec.py: error: {inputs[0]}: is a FIFO (named pipe), not a regular file",
            "codec.py: error: /dev/zero: is a character device, not a regular file",
        ]
        assert [p.name for p in out.iterdir()] == [f"a.{'tcm' if command == 'compress' else 'png'}"]
    proc = subprocess.run([sys.executable, str(ROOT / "codec.py"), "compress", str(tmp_path / "a.png"),
                           str(tmp_path / "b.tcm"), "-c", "/dev/zero"], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr.strip()) == (
        1, "codec.py: error: checkpoint /dev/zero is a character device, not a regular file")


# ------------------------------------------------------------------ outputs that would destroy something
@pytest.mark.slow
def test_an_output_of_another_kind_is_replaced_only_with_force(ck, tmp_path, capsys, small):
    small[0].save(tmp_path / "a.png")
    small[0].save(tmp_path / "victim.png")
    victim = (tmp_path / "victim.png").read_bytes()
    assert codec.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "victim.png"), "-c", str(ck)]) == 1
    assert (tmp_path / "victim.png").read_bytes() == victim
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"codec.py: error: {tmp_path / 'a.png'}: output {tmp_path / 'victim.png'} exists and holds a PNG "
                   "image, not a .tcm file: choose another name, or give -f/--force to replace it"]
    # an earlier .tcm file is replaced as before; an image over a .tcm file is refused too
    (tmp_path / "old.tcm").write_bytes(small[1])
    assert codec.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "old.tcm"), "-c", str(ck), "-q"]) == 0
    (tmp_path / "x.png").write_bytes(small[1])  # a .tcm file, whatever its name says
    assert codec.main(["decompress", str(tmp_path / "old.tcm"), str(tmp_path / "x.png"), "-c", str(ck)]) == 1
    assert (tmp_path / "x.png").read_bytes() == small[1] and "holds a .tcm file, not a PNG image" in capsys.readouterr().err
    assert codec.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "victim.png"), "-c", str(ck), "-f"]) == 0
    assert (tmp_path / "victim.png").read_bytes() == small[1]


@pytest.mark.slow
def test_no_input_is_ever_overwritten_force_or_not(ck, tmp_path, capsys, small):
    small[0].save(tmp_path / "a.png")
    ck_bytes = ck.read_bytes()
    # the checkpoint named as the output
    for force in ([], ["-f"]):
        assert codec.main(["compress", str(tmp_path / "a.png"), str(ck), "-c", str(ck), *force]) == 1
        assert ck.read_bytes() == ck_bytes
        assert "is also an input" in capsys.readouterr().err
    # another input of the batch: d/a.tcm decodes to d/b.png, itself an input
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.tcm").write_bytes(small[1])
    (tmp_path / "d" / "b.png").write_bytes(b"an input of this batch")
    (tmp_path / "d" / "a.tcm").write_bytes(small[1])
    inputs = [tmp_path / "d" / "b.tcm", tmp_path / "d" / "b.png"]
    for force in ([], ["-f"]):
        assert codec.main(["decompress", *map(str, inputs), str(tmp_path / "d"), "-c", str(ck), *force]) == 1
        assert (tmp_path / "d" / "b.png").read_bytes() == b"an input of this batch"
        assert f"{inputs[0]}: output {inputs[1]} is also an input" in capsys.readouterr().err


def test_stale_temporaries_of_a_killed_run_are_removed_at_the_next_start(ck, tmp_path, capsys, small):
    small[0].save(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    hour_ago = time.time() - 3600
    stale = [out / ".a.tcm.k3j_9x0q.part", out / ".other.tcm.abcdefgh.part"]
    kept = [out / ".b.tcm.0a1b2c3d.part",  # fresh: another process may be writing it
            out / ".notes.txt.abcdefgh.part",  # not a .tcm output's
            out / ".a.tcm.part", out / "a.tcm.abcdefgh.part"]  # not atomic_write's naming
    for path in stale + kept:
        path.write_bytes(b"partial")
    for path in stale + kept[1:]:
        os.utime(path, (hour_ago, hour_ago))
    assert codec.main(["compress", str(tmp_path / "a.png"), f"{out}/", "-c", str(ck), "--entropy", "float64"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["a.tcm", *(p.name for p in kept)])
    assert capsys.readouterr().err.strip() == f"note: removed 2 temporary file(s) left in {out} by an interrupted run"


# ------------------------------------------------------------------ finding the weights a file names
@pytest.mark.slow
def test_decompress_finds_the_weights_in_a_weights_path_folder(ck, other_ck, tmp_path, monkeypatch, capsys, small):
    from file_codec.weights import SHIPPED, WEIGHTS_PATH_ENV

    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "mine.pth").write_bytes(ck.read_bytes())
    (tmp_path / "a.tcm").write_bytes(small[1])
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    monkeypatch.setenv(WEIGHTS_PATH_ENV, os.pathsep.join([str(tmp_path / "nothing here"), str(folder)]))
    assert codec.main(["info", str(tmp_path / "a.tcm")]) == 0
    assert "  weights         not checked (" in capsys.readouterr().out  # nothing loaded by info
    assert codec.main(["decompress", str(tmp_path / "a.tcm"), str(tmp_path / "a.png"), "-q"]) == 0
    assert codec.main(["decompress", str(tmp_path / "a.tcm"), str(tmp_path / "b.png"), "-c", str(ck), "-q"]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert codec.main(["info", str(tmp_path / "a.tcm")]) == 0
    assert f"  weights         found: {folder / 'mine.pth'}\n" in capsys.readouterr().out
    # explicit weights win: the other checkpoint is refused by id, not replaced by the one found
    assert codec.main(["decompress", str(tmp_path / "a.tcm"), str(tmp_path / "c.png"), "-c", str(other_ck)]) == 1
    assert "made with weights" in capsys.readouterr().err and not (tmp_path / "c.png").exists()
    # weights nowhere: one line naming the id and every place looked in
    (folder / "mine.pth").unlink()
    assert codec.main(["decompress", str(tmp_path / "a.tcm"), str(tmp_path / "d.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and Codec.load(ck).id_hex in err[0]
    assert all(str(place) in err[0] for place in (SHIPPED, tmp_path / "nothing here", folder))
    assert codec.main(["info", str(tmp_path / "a.tcm")]) == 0
    assert f"  weights         not found in {SHIPPED}, " in capsys.readouterr().out


@pytest.mark.slow
def test_a_file_made_with_a_shipped_model_decodes_with_no_option(tmp_path, monkeypatch, small):
    from file_codec.weights import SHIPPED, WEIGHTS_PATH_ENV

    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    monkeypatch.delenv(WEIGHTS_PATH_ENV, raising=False)
    shipped, = SHIPPED.glob("tcm-demo-mse-0.013-*.pth.tar")
    small[0].save(tmp_path / "a.png")
    assert codec.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "a.tcm"), "-c", str(shipped), "-q"]) == 0
    proc = subprocess.run([sys.executable, str(ROOT / "codec.py"), "decompress", str(tmp_path / "a.tcm"),
                           str(tmp_path / "b.png")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "b.png").size == small[0].size
    proc = subprocess.run([sys.executable, str(ROOT / "codec.py"), "info", str(tmp_path / "a.tcm")],
                          capture_output=True, text=True, timeout=60)
    assert f"  weights         found: {shipped}\n" in proc.stdout


def test_the_default_entropy_is_int8_for_weights_with_integer_parameters_else_float64_and_nothing_on_stderr(
        ck, tmp_path, capsys, small):
    """Release files carry integer parameters (the conformance model does): their files are exact integers; other
    weights would calibrate their own, which another machine may not reproduce, so they write float64 (which
    ``info`` says, as for every file)."""
    small[0].save(tmp_path / "a.png")
    released = ROOT / "tests" / "data" / "conformance" / "model.pth.tar"
    assert codec.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "a.tcm"), "-c", str(released), "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert container.parse((tmp_path / "a.tcm").read_bytes())[0].entropy == "int8"
    assert codec.main(["decompress", str(tmp_path / "a.tcm"), str(tmp_path / "a.png"), "-c", str(released), "-f",
                       "-q"]) == 0
    assert codec.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "b.tcm"), "-c", str(ck), "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert container.parse((tmp_path / "b.tcm").read_bytes())[0].entropy == "float64"
    assert codec.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "c.tcm"), "-c", str(ck), "-q",
                       "--entropy", "float32"]) == 0
    assert container.parse((tmp_path / "c.tcm").read_bytes())[0].entropy == "float32"  # asked for
    assert capsys.readouterr().err == ""
