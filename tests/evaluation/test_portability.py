"""Files decode under other configurations: encoded in one process, decoded in others."""

from __future__ import annotations

import pytest

from evaluation.portability import decode, encode, mismatch_table
from tests.helpers import codec_checkpoint, synthetic_photo


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("portability")
    ck = codec_checkpoint(root / "tiny.pth", seed=3)
    images = []
    for i, (h, w) in enumerate([(200, 300), (130, 140), (256, 256)]):
        images.append(root / f"img{i}.png")
        synthetic_photo(h, w, seed=20 + i).save(images[-1])
    return ck, images, root


@pytest.mark.slow
def test_portable_files_decode_in_every_configuration(setup):
    ck, images, root = setup
    configs = ("same", "onednn-off", "1-thread-onednn-off-nchw")  # portability.py measures them all
    table = mismatch_table(str(ck), images, root / "table", configs, paths=("portable",))
    assert table["portable"] == {config: 0 for config in configs}


@pytest.mark.slow
def test_bf16_and_float32_decoders_both_decode_either_encoders_files(setup):
    ck, images, root = setup
    for enc in ("fp32", "bf16"):
        files = encode(str(ck), images[:2], root / f"enc-{enc}", precision=enc)
        for dec in ("fp32", "bf16"):
            assert set(decode(str(ck), files, "1-thread", precision=dec).values()) == {"ok"}, (enc, dec)
