"""The CUDA paths: model, coding, training with and without AMP, checkpoints across devices.

Every test here needs a CUDA device and is skipped, with that reason, without
one; ``make gpu-check`` runs them (and ``bench.py --cuda --quick``) on a machine
that has one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import train
from tests.helpers import codec_checkpoint, synthetic_photo, tiny_tcm
from training import LATEST

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (make gpu-check on a GPU machine)"),
]
CUDA = torch.device("cuda")
TINY = ["--N", "32", "--M", "80", "--hyper-channels", "32", "--atten-dim", "32", "--entropy-hidden", "32", "32"]


def _image(h: int = 256, w: int = 384, seed: int = 0) -> torch.Tensor:
    from datasets import to_tensor

    return to_tensor(synthetic_photo(h, w, seed=seed))


@pytest.fixture(scope="module")
def nets():
    cpu = tiny_tcm(seed=4)
    cpu.update(force=True)
    cpu.eval()
    gpu = tiny_tcm(seed=4)
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.to(CUDA).eval()


def test_forward_on_cuda_agrees_with_the_cpu(nets):
    cpu, gpu = nets
    x = _image()
    with torch.no_grad():
        a, b = cpu(x), gpu(x.to(CUDA))
    assert (a["x_hat"] - b["x_hat"].cpu()).abs().max() < 1e-3
    bits = lambda out: sum(-torch.log2(v).sum().item() for v in out["likelihoods"].values())  # noqa: E731
    assert bits(b) == pytest.approx(bits(a), rel=1e-3)


@pytest.mark.parametrize("mode", ["float32/float32", "float64/float32"])
def test_encoder_and_decoder_on_cuda_agree_exactly(nets, mode):
    from models.coding import Coder

    _, gpu = nets
    x = _image(seed=1).to(CUDA)
    coder = Coder(gpu, mode)
    enc = coder.compress(x)
    dec = coder.decompress(enc["strings"], enc["shape"])
    assert torch.equal(enc["symbols"]["y"], dec["symbols"]["y"]) and torch.equal(enc["symbols"]["z"], dec["symbols"]["z"])
    with torch.no_grad():
        assert torch.equal(gpu.g_s(enc["y_hat"]).clamp(0, 1), dec["x_hat"])


def test_float64_entropy_files_cross_between_cpu_and_cuda(tmp_path):
    """Encode on the CPU, decode on CUDA, and the reverse: files of the float64 entropy arithmetic decode either way."""
    from file_codec import Codec

    ck = codec_checkpoint(tmp_path / "tiny.pth", seed=5)
    cpu, gpu = Codec.load(ck), Codec.load(ck)
    gpu.net.to(CUDA)
    for seed in range(3):
        image = synthetic_photo(200 + 16 * seed, 300, seed=40 + seed)
        for enc, dec in ((cpu, gpu), (gpu, cpu)):
            assert dec.decode(enc.encode(image)).size == image.size


def test_attention_takes_a_fused_kernel_on_cuda(nets, monkeypatch):
    """Inference attention runs in SDPA's fused kernels (flash or memory-efficient), not the math fallback:
    with only those allowed, every attention call of the model still runs (torch raises where none accepts)."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _, gpu = nets
    calls = []
    original = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    x = _image(128, 128, seed=2).to(CUDA)
    with torch.no_grad(), sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        out = gpu(x)
    layers = sum(1 for m in gpu.modules() if type(m).__name__ == "WindowAttention")
    assert len(calls) >= layers and bool(torch.isfinite(out["x_hat"]).all())


def _data(root: Path) -> Path:
    for split, n in (("train", 4), ("test", 1)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            synthetic_photo(160, 200, seed=50 + i + (10 if split == "test" else 0)).save(root / split / f"{i}.png")
    return root


def _cli(data: Path, save: Path, *extra: str) -> list[str]:
    return ["-d", str(data), *TINY, "--patch-size", "128", "128", "--batch-size", "2", "--test-batch-size", "1",
            "-n", "0", "--steps-per-epoch", "2", "--max-test-images", "1", "--no-progress", "--save_path", str(save),
            "--lambda", "0.01", *extra]


@pytest.mark.parametrize("amp", [[], ["--amp"], ["--amp", "bf16"]], ids=["no-amp", "amp-fp16", "amp-bf16"])
def test_training_on_cuda_lowers_the_loss(tmp_path, amp):
    data = _data(tmp_path / "data")
    assert train.main(_cli(data, tmp_path / "runs", "--cuda", "--epochs", "6", "-lr", "1e-3", *amp)) == 0
    history = torch.load(tmp_path / "runs" / "mse_lambda_0.01" / LATEST, weights_only=True)["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_a_checkpoint_moves_between_cuda_and_cpu(tmp_path):
    data = _data(tmp_path / "data")
    latest = tmp_path / "runs" / "mse_lambda_0.01" / LATEST
    assert train.main(_cli(data, tmp_path / "runs", "--cuda", "--epochs", "1")) == 0
    assert train.main(_cli(data, tmp_path / "runs", "--epochs", "2", "--checkpoint", str(latest))) == 0  # on CPU
    assert train.main(_cli(data, tmp_path / "runs", "--cuda", "--epochs", "3", "--checkpoint", str(latest))) == 0
    assert torch.load(latest, weights_only=True)["epoch"] == 2
