"""models.coder_inputs: nothing that crashes or hangs the C++ rANS coder reaches it.

The cases that crashed (segfault) or hung (an endless loop deaf to SIGTERM)
before the checks run in a subprocess with a timeout, so that a regression
fails its test instead of killing or hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from models.coder_inputs import CoderInputError, check_codable, check_indexes, checked_tables
from models.coding import Coder
from tests.helpers import ROOT, tiny_tcm


@pytest.fixture(scope="module")
def net():
    model = tiny_tcm().eval()
    model.update(force=True)
    return model


def run_script(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter at the project root; a crash shows as a negative status."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_the_models_own_tables_pass(net):
    for module, what in ((net.gaussian_conditional, "Gaussian"), (net.entropy_bottleneck, "hyperprior")):
        cdf, lengths, offsets = checked_tables(module, what)
        assert cdf.shape[0] == lengths.numel() == offsets.numel()


@pytest.mark.parametrize("damage, message", [
    (lambda gc: setattr(gc, "_quantized_cdf", gc._quantized_cdf.new_empty(0)), r"Run update\(\) first"),
    (lambda gc: setattr(gc, "_cdf_length", gc._cdf_length[:-1].clone()), "disagree"),
    (lambda gc: setattr(gc, "_offset", gc._offset[:3].clone()), "disagree"),
    (lambda gc: gc._cdf_length.__setitem__(0, gc._quantized_cdf.shape[1] + 5), "CDF lengths outside"),
    (lambda gc: gc._cdf_length.__setitem__(0, 1), "CDF lengths outside"),
    (lambda gc: gc._offset.__setitem__(0, -(1 << 30)), "offsets beyond"),
    (lambda gc: gc._quantized_cdf.__setitem__((0, 2), 0), "not valid 16-bit CDFs"),
    (lambda gc: gc._quantized_cdf.__setitem__((1, 0), 7), "not valid 16-bit CDFs"),
])
def test_damaged_tables_are_refused_in_one_line(damage, message):
    model = tiny_tcm().eval()
    model.update(force=True)
    gc = model.gaussian_conditional
    damage(gc)
    with pytest.raises(CoderInputError, match=message) as e:
        checked_tables(gc, "Gaussian")
    assert "\n" not in str(e.value) and "Gaussian" in str(e.value)


def test_values_the_coder_cannot_take_are_refused():
    check_codable(torch.tensor([0.0, -300.5, 1e6]), "y")
    for bad, message in ((float("nan"), "non-finite"), (float("inf"), "non-finite"), (1e30, "beyond")):
        with pytest.raises(CoderInputError, match=message):
            check_codable(torch.tensor([0.0, bad]), "the latent y")
    check_indexes(torch.tensor([0, 63]), 64, "the scales")
    for bad in (-1, 64):
        with pytest.raises(CoderInputError, match="outside the 64 coding tables"):
            check_indexes(torch.tensor([0, bad]), 64, "the scales")


@pytest.mark.parametrize("scale, message", [
    (255.0, r"values in \[0, 255\]: divide 8-bit values by 255"),
    (-1.0, r"values in \[-1, 0\]"),
    (float("nan"), r"\(or NaN\)"),
])
def test_compress_refuses_images_outside_0_1_in_both_arithmetics(net, scale, message):
    """8-bit values not divided by 255 (or negative, or NaN) would code a wrong image without a word."""
    x = torch.zeros(1, 3, 128, 128)
    x[0, 0, 0, 0] = scale
    for coder in (net, Coder(net, "float64/float32")):
        with pytest.raises(CoderInputError, match=message) as e:
            coder.compress(x)
        assert "\n" not in str(e.value)


@pytest.mark.slow
def test_a_release_file_loaded_without_update_is_refused_not_a_segfault():
    # TCM.from_state_dict on a float16 release file: the Gaussian tables are stored empty.
    proc = run_script("""
        import glob, torch
        from models import TCM
        from models.coder_inputs import CoderInputError
        sd = torch.load(glob.glob("pretrained/tcm-demo-mse-0.013-*.pth.tar")[0], weights_only=True)
        net = TCM.from_state_dict(sd).eval()
        x = torch.rand(1, 3, 128, 128)
        for call in (lambda: net.compress(x), lambda: net.decompress([[b"\\0" * 64], [b"\\0" * 64]], (2, 2))):
            try:
                call()
                print("coded")
            except CoderInputError as e:
                print("refused:", e)
    """)
    assert proc.returncode == 0, f"status {proc.returncode}: {proc.stderr[-2000:]}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("refused: the Gaussian coding tables") for line in lines), lines
    assert all("update()" in line for line in lines)


@pytest.mark.slow
def test_non_finite_or_huge_latents_are_refused_not_an_endless_loop():
    # NaN or 1e30 in g_a's first weight: the latents become int32's limits, the coder's escape loop never ends.
    proc = run_script("""
        import torch
        from models.coder_inputs import CoderInputError
        from models.coding import Coder
        from tests.helpers import tiny_tcm
        x = torch.rand(1, 3, 128, 128)
        for value in (float("nan"), 1e30):
            net = tiny_tcm().eval()
            net.update(force=True)
            with torch.no_grad():
                net.g_a[0].conv1.weight[0, 0, 0, 0] = value
            for coder in (net, Coder(net, "float64/float32")):  # the published function, the float64 entropy
                try:
                    coder.compress(x)
                    print("coded")
                except CoderInputError as e:
                    print("refused:", e)
    """, timeout=120)
    assert proc.returncode == 0, f"status {proc.returncode}: {proc.stderr[-2000:]}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("refused: the weights or the input produce") for line in lines)


@pytest.mark.parametrize("mode", ["float32/float32", "float64/bfloat16"])
def test_nan_in_the_entropy_model_is_refused_when_decoding(net, mode):
    x = torch.rand(1, 3, 128, 128)
    enc = Coder(net, mode).compress(x)
    broken = tiny_tcm().eval()
    broken.load_state_dict(net.state_dict())
    with torch.no_grad():
        broken.entropy_model.cc_scale_transforms[0][0].weight.fill_(float("nan"))
    with pytest.raises(CoderInputError, match="non-finite values .* in the (means|scales) of slice 0"):
        Coder(broken, mode).decompress(enc["strings"], enc["shape"])
    if mode == "float32/float32":  # the published API, the same checks
        with pytest.raises(CoderInputError, match="non-finite values .* in the (means|scales) of slice 0"):
            broken.decompress(enc["strings"], enc["shape"])
