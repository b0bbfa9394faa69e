"""Files decode under other configurations: encoded in one process, decoded in others."""

from __future__ import annotations

import json

import pytest
import torch

from datasets import to_tensor
from evaluation.portability import (CONFIGS, boundary_margins, coding_cost, configuration, decode, decoder_parameters,
                                    configured, encode, kernel_policy_of, mismatch_table)
from layers.config import DEFAULT_KERNELS, KernelPolicy, kernels_of
from models.coding import Coder, CodingMode
from tests.helpers import codec_checkpoint, synthetic_photo, tiny_tcm


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
def test_float64_entropy_files_decode_in_every_configuration(setup):
    ck, images, root = setup
    configs = ("same", "onednn-off", "1-thread-onednn-off-nchw")  # portability.py measures them all
    table = mismatch_table(str(ck), images, root / "table", configs, modes=(CodingMode.PORTABLE,))
    assert table == {"float64/float32": {config: 0 for config in configs}}


@pytest.mark.slow
def test_bfloat16_and_float32_decoders_both_decode_either_encoders_files(setup):
    ck, images, root = setup
    for enc in CodingMode.TRANSFORMS:
        files = encode(str(ck), images[:2], root / f"enc-{enc}", CodingMode("float64", enc))
        for dec in CodingMode.TRANSFORMS:
            assert set(decode(str(ck), files, "1-thread", CodingMode("float64", dec)).values()) == {"ok"}, (enc, dec)


def test_a_configuration_sets_its_process_settings_for_its_block_and_rebuilds_copies_to_its_policy():
    """Threads and oneDNN for the block only; the kernel policy (layers.config) on a rebuilt copy of the model."""
    assert kernel_policy_of(CONFIGS["nchw"]) == KernelPolicy(channels_last=False)
    assert kernel_policy_of(CONFIGS["same"]) == kernel_policy_of(CONFIGS["1-thread"]) == KernelPolicy()
    before = (torch.get_num_threads(), torch.backends.mkldnn.enabled)
    with configuration(CONFIGS["1-thread-onednn-off-nchw"]):
        assert torch.get_num_threads() == 1 and not torch.backends.mkldnn.enabled
    assert (torch.get_num_threads(), torch.backends.mkldnn.enabled) == before
    net = tiny_tcm(seed=3)
    nchw = configured(net, CONFIGS["nchw"])
    assert kernels_of(nchw) == {KernelPolicy(channels_last=False)} and kernels_of(net) == {DEFAULT_KERNELS}


def test_boundary_margins_reads_the_decoders_parameters():
    net = tiny_tcm(seed=3).eval()
    net.update(force=True)
    x = to_tensor(synthetic_photo(128, 128, seed=21))
    coder = Coder(net, CodingMode.PORTABLE)
    encoded = coder.compress(x)
    means, scales = decoder_parameters(coder, encoded)
    # what the real decoder computes from the real streams
    seen = coder.decode_latents(encoded["strings"], encoded["shape"], keep_parameters=True)
    assert torch.equal(seen["symbols"]["y"], encoded["symbols"]["y"])
    assert len(seen["means"]) == len(means) == len(scales) == net.num_slices
    assert all(torch.equal(m.double(), a) and torch.equal(s.double(), b)
               for m, s, a, b in zip(seen["means"], seen["scales"], means, scales))
    out = boundary_margins(net, x, ["same", "nchw"], entropy="float64")
    assert out["elements"] == net.M * 8 * 8 and 0 <= out["share_within_1e-3"] <= 1
    same, nchw = out["configs"]["same"], out["configs"]["nchw"]
    assert same["max_relative_scale_move"] == 0.0 and same["max_mean_move"] == 0.0  # one configuration, twice
    assert nchw["max_relative_scale_move"] < 1e-12  # float64 arithmetic
    assert kernels_of(net) == {DEFAULT_KERNELS}  # the model itself is never rebuilt


@pytest.mark.slow
def test_coding_cost_times_every_mode_on_every_image(setup):
    ck, images, _ = setup
    cost = coding_cost(str(ck), images[:2], CodingMode.all())
    assert list(cost) == ["float32/float32", "float32/bfloat16", "float64/float32", "float64/bfloat16", "int8/float32",
                          "int8/bfloat16"]
    for times in cost.values():
        assert set(times) == {"encode", "decode"} and all(0 < t < 60 for t in times.values())


@pytest.mark.slow
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
    assert [r[1] for r in rows] == ["float32/float32", "float64/float32"]
    assert rows[0][-3:] == ["+0.0%", "/", "+0.0%"] and rows[1][-1].endswith("%")
    saved = json.loads(out.read_text())
    assert saved["images"] == 1 and saved["coding"] == ["float32/float32", "float64/float32"]
    assert set(saved["models"][ck.name]["float64/float32"]) == {"encode", "decode"}


def test_a_random_models_checkpoint_carries_integer_parameters_calibrated_once(tmp_path):
    """Each configuration's process would calibrate random weights itself, from float32 latents whose last bits
    depend on its kernels, and get parameters of its own: the checkpoint carries the encoder's, as a release does."""
    from evaluation.portability import random_checkpoint
    from models import load_model
    from models.integer_entropy import CHECKPOINT_KEY, Parameters

    net = tiny_tcm().eval()
    net.update(force=True)
    assert CHECKPOINT_KEY not in random_checkpoint(net, [CodingMode.parse("float64/float32")])
    checkpoint = random_checkpoint(net, [CodingMode.parse("float32/float32"),
                                                     CodingMode.parse("int8/float32")])
    torch.save(checkpoint, tmp_path / "random.pth")
    loaded = load_model(tmp_path / "random.pth")
    digest = Coder(loaded, CodingMode.parse("int8/float32")).entropy_model.integer_parameters.digest()
    assert digest == Parameters(checkpoint[CHECKPOINT_KEY]).digest()
