"""Files made on other machines decode here (conformance streams).

Two fixed sets: ``../shared/conformance`` (made on an Intel Xeon with AMX with a
copy of the shipped λ=0.013 model; skipped where that folder is absent) and
``tests/data/conformance`` (made with a small model kept in the repository;
its README names the machine).  Each set is checked against the criteria its
README states: every stream decodes (the latent checksum matches, so the coded
symbols are bit-exact), its float32 decode is within 1 level of the encoder
machine's at every pixel, and its bfloat16 decode is close to that (PSNR bound).
The shared set keeps the file names it was made with (``decoded-fp32/``,
``NAME-enc-fp32.tcm``): they are read as they are.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from file_codec import Codec, container
from models import CodingMode
from tests.helpers import SHARED, require

OWN = Path(__file__).resolve().parent.parent / "data" / "conformance"
pytestmark = pytest.mark.conformance


def psnr_8bit(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def conforms(codec: Codec, stream: Path, expected: Path, bfloat16_min_psnr: float) -> None:
    """The three criteria, for one stream: bit-exact symbols, float32 transforms within 1, bfloat16 above a PSNR."""
    data = stream.read_bytes()
    want = np.asarray(Image.open(expected).convert("RGB"))
    float32 = np.asarray(replace(codec, mode=CodingMode.parse("float64/float32")).decode(data))  # CodecError on a latent checksum mismatch
    assert float32.shape == want.shape, stream.name
    worst = int(np.abs(float32.astype(np.int16) - want).max())
    assert worst <= 1, f"{stream.name}: a float32 decode differs from the encoder machine's by {worst} levels"
    bfloat16 = np.asarray(replace(codec, mode=CodingMode.parse("float64/bfloat16")).decode(data))
    quality = psnr_8bit(bfloat16, want)
    assert quality >= bfloat16_min_psnr, f"{stream.name}: bfloat16 decode at {quality:.1f} dB of the float32 one"


# ------------------------------------------------------------ made on another machine (../shared)
SHARED_SET = SHARED / "conformance"


@pytest.fixture(scope="module")
def shared_codec() -> Codec:
    (model,) = require(SHARED_SET).glob("*.pth.tar")
    return Codec.load(model)


def shared_streams() -> list[str]:
    return sorted(p.name for p in (SHARED_SET / "streams").glob("*.tcm")) or ["(absent)"]


@pytest.mark.slow
@pytest.mark.parametrize("name", shared_streams())
def test_streams_made_on_another_machine_conform(shared_codec, name):
    stream = require(SHARED_SET / "streams" / name)
    conforms(shared_codec, stream, SHARED_SET / "decoded-fp32" / stream.with_suffix(".png").name, 50.0)


def test_the_shared_set_is_the_one_described():
    """Sixteen decodes: eight streams (four images, two encoder transforms), each with two decoder transforms."""
    streams = sorted((require(SHARED_SET) / "streams").glob("*.tcm"))
    assert len(streams) == 8
    for s in streams:
        header, _ = container.parse(s.read_bytes())
        assert header.version == 2 and header.entropy == "float64", s.name
        assert (SHARED_SET / "decoded-fp32" / s.with_suffix(".png").name).is_file()


# ------------------------------------------------------------ made with the repository's small model
def own_manifest() -> dict:
    return json.loads((OWN / "manifest.json").read_text())


@pytest.fixture(scope="module")
def own_codec() -> Codec:
    return Codec.load(OWN / own_manifest()["model"])


@pytest.mark.parametrize("entry", own_manifest()["streams"], ids=lambda e: e["stream"])
def test_streams_kept_in_the_repository_conform(own_codec, entry):
    stream = OWN / entry["stream"]
    header, _ = container.parse(stream.read_bytes())
    assert (header.version, header.entropy, len(header.lengths)) == (entry["version"], entry.get("entropy", "float64"),
                                                                      entry["tiles"])
    assert header.weights_id == own_codec.weights_id
    conforms(own_codec, stream, OWN / entry["decoded_float32"], own_manifest()["bfloat16_min_psnr"])


def test_the_repository_set_covers_both_transforms_versions_arithmetics_and_tiles():
    streams = own_manifest()["streams"]
    assert {e["transforms"] for e in streams} == set(CodingMode.TRANSFORMS) == {"float32", "bfloat16"}
    assert {(e["version"], e["entropy"]) for e in streams} == {(2, "float64"), (3, "float64"), (4, "int8")}
    assert all(e["stream"].endswith(f"-enc-{e['transforms']}.tcm") for e in streams)  # the names say it too
    assert all(("-int8-" in e["stream"]) == (e["entropy"] == "int8") for e in streams)
    assert any(e["tiles"] > 1 for e in streams) and any(e["tiles"] == 1 for e in streams)
    assert (OWN / own_manifest()["model"]).stat().st_size <= 1_100_000
