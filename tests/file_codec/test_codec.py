"""The codec library: round trips, tiles, weights ids, a drifted decoder (file_codec/codec.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from datasets import to_image, to_tensor
from file_codec import Codec, CodecError, container, weights_id
from tests.helpers import codec_checkpoint, noise_image, tiny_tcm
from utils import PADDINGS, crop


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return codec_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pth")


@pytest.fixture(scope="module")
def tcm(ck) -> Codec:
    return Codec.load(ck)


@pytest.fixture(scope="module")
def small(tcm) -> tuple:
    image = noise_image(20, 30, seed=11)
    return image, tcm.encode(image)


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("height,width", [(1, 1), (130, 3)])
def test_round_trip_sizes(tcm, height, width):
    decoded = tcm.decode(tcm.encode(noise_image(height, width)))
    assert decoded.size == (width, height) and decoded.mode == "RGB"


@pytest.mark.parametrize("padding", ["zero", "replicate"])
def test_tiles_are_the_models_bitstream_and_reconstruction(tcm, padding):
    image = noise_image(100, 200, seed=3)
    data = Codec(tcm.net, tcm.weights_id, tile=128, padding=padding).encode(image)
    header, streams = container.parse(data)
    assert (header.height, header.width, header.tile) == (100, 200, 128)
    assert container.PADDING_NAMES[header.padding_mode] == padding
    x, padding = PADDINGS[padding](to_tensor(image), 128)  # 128x256: two tiles, each coded as TCM.compress codes it
    expected = torch.zeros_like(x)
    for (t, l, th, tw), (z, y) in zip(header.tiles(), streams, strict=True):
        out = tcm.net.compress(x[..., t : t + th, l : l + tw])
        assert (z, y) == (out["strings"][1][0], out["strings"][0][0])
        expected[..., t : t + th, l : l + tw] = tcm.net.decompress(out["strings"], out["shape"])["x_hat"]
    decoded = tcm.decode(data)  # the tile side is read off the file, whatever the decoder's setting
    assert decoded.size == (200, 100)
    assert np.array_equal(np.asarray(decoded), np.asarray(to_image(crop(expected, padding))))


def test_weights_id_ignores_file_format(tmp_path, tcm, small):
    net = tiny_tcm()  # the same weights as ``ck``, saved as a training checkpoint, tables not built
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "optimizer": {}, "epoch": 7}, tmp_path / "train.pth.tar")
    training = Codec.load(tmp_path / "train.pth.tar")
    assert training.weights_id == tcm.weights_id
    assert training.decode(small[1]).tobytes() == tcm.decode(small[1]).tobytes()
    assert weights_id(tiny_tcm(seed=1)) != tcm.weights_id


def test_drifted_decoder_reports_a_mismatch(tcm, small):
    drifted = copy.deepcopy(tcm.net)
    with torch.no_grad():  # a decoder whose scale arithmetic differs from the encoder's
        drifted.cc_scale_transforms[2][-1].bias.add_(0.5)
    with pytest.raises(CodecError, match="latent checksum mismatch"):
        Codec(drifted, tcm.weights_id).decode(small[1])


def test_a_version_1_file_still_decodes_as_before(tcm):
    """Version 1 (no tables id, float32 path): the bytes the previous codec wrote for the same streams."""
    image = noise_image(40, 70, seed=12)
    float32 = Codec(tcm.net, tcm.weights_id, portable=False, version=2)
    header, streams = container.parse(float32.encode(image))
    v1 = container.pack(container.Header(header.weights_id, header.height, header.width, header.pad_top,
                                          header.pad_left, header.tile, latent_crc=header.latent_crc, version=1),
                        streams)
    assert v1[4] == 1 and container.header_size(container.parse(v1)[0]) == container.header_size(header) - 5
    assert tcm.decode(v1).tobytes() == float32.decode(float32.encode(image)).tobytes()


def test_portable_and_float32_files_say_which_path_made_them(tcm):
    image = noise_image(40, 70, seed=13)
    portable, float32 = tcm.encode(image), Codec(tcm.net, tcm.weights_id, portable=False).encode(image)
    assert container.parse(portable)[0].portable and not container.parse(float32)[0].portable
    for data in (portable, float32):  # each decodes with the path its header names
        assert tcm.decode(data).size == (70, 40)


def test_other_coding_tables_are_refused_naming_both(tcm, small):
    other = copy.deepcopy(tcm.net)
    other.entropy_bottleneck._quantized_cdf[0, 1] += 1  # the same weights, other tables
    codec = Codec(other, tcm.weights_id)
    assert codec.tables_id != tcm.tables_id
    with pytest.raises(CodecError, match=f"made with coding tables {tcm.tables_id.hex()}.*{codec.tables_id.hex()}"):
        codec.decode(small[1])
