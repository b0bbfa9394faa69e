"""Files decode under other configurations: encoded in one process, decoded in others."""

from __future__ import annotations

import json

import pytest

from evaluation.portability import COST_VARIANTS, coding_cost, decode, encode, mismatch_table
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


def test_coding_cost_times_every_variant_on_every_image(setup):
    ck, images, _ = setup
    cost = coding_cost(str(ck), images[:2], list(COST_VARIANTS))
    assert list(cost) == list(COST_VARIANTS)
    for times in cost.values():
        assert set(times) == {"encode", "decode"} and all(0 < t < 60 for t in times.values())


def test_portability_cli_prints_the_cost(setup, tmp_path, capsys):
    import portability

    ck, images, _ = setup
    data = tmp_path / "photos"
    data.mkdir()
    (data / "a.png").write_bytes(images[1].read_bytes())
    out = tmp_path / "cost.json"
    assert portability.main(["--checkpoint", str(ck), "--data", str(data), "--cost", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [line.split() for line in printed.splitlines() if line.startswith(ck.name)]
    assert [r[1] for r in rows] == ["float32", "portable"]
    assert rows[0][-3:] == ["+0.0%", "/", "+0.0%"] and rows[1][-1].endswith("%")
    saved = json.loads(out.read_text())
    assert saved["images"] == 1 and saved["variants"] == ["float32", "portable"]
    assert set(saved["models"][ck.name]["portable"]) == {"encode", "decode"}
