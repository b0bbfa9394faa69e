"""Loading checkpoints: published layouts, safety, readable errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import pytest
import torch

from models import CheckpointError, TCM, load_model, model_from_state_dict, tcm_small
from tests.helpers import ROOT, tiny_tcm

LEGACY = {"matrices": "_matrix", "biases": "_bias", "factors": "_factor"}


def published_layout(model: TCM) -> dict:
    """A training checkpoint as the authors' code saved it in 2023."""
    sd = {}
    for k, v in model.state_dict().items():
        parts = k.split(".")
        if parts[0] == "entropy_bottleneck" and parts[1] in LEGACY:
            k = f"entropy_bottleneck.{LEGACY[parts[1]]}{parts[2]}"
        sd["module." + k] = v
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    aux = torch.optim.Adam([model.entropy_bottleneck.quantiles], lr=1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[45, 48])
    return {"epoch": 3, "state_dict": sd, "loss": torch.tensor(1.5), "optimizer": opt.state_dict(),
            "aux_optimizer": aux.state_dict(), "lr_scheduler": sched.state_dict()}


def test_published_layout_loads_strictly_and_computes_the_same(tmp_path):
    torch.manual_seed(3)
    model = tcm_small().eval()
    model.update(force=True)
    ck = published_layout(model)
    assert "module.entropy_bottleneck._matrix0" in ck["state_dict"]
    path = tmp_path / "published.pth.tar"
    torch.save(ck, path)

    loaded = load_model(path)
    assert loaded.N == 64
    x = torch.rand(1, 3, 128, 256)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a["x_hat"], b["x_hat"])
    assert torch.equal(a["likelihoods"]["y"], b["likelihoods"]["y"])
    assert model.compress(x)["strings"] == loaded.compress(x)["strings"]
    # and strict loading of the same dict into a fresh model works too
    strict = model_from_state_dict(ck)
    assert torch.equal(strict.state_dict()["g_a.0.conv1.weight"], model.state_dict()["g_a.0.conv1.weight"])


def test_bare_state_dict_and_architecture_inference(tmp_path):
    model = tiny_tcm(seed=5)
    path = tmp_path / "bare.pth"
    torch.save(model.state_dict(), path)
    loaded = load_model(path)
    assert (loaded.N, loaded.M, loaded.num_slices) == (32, 80, 5)
    got = loaded.state_dict()
    for k, v in model.state_dict().items():
        if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table")):
            assert torch.equal(got[k], v), k


@pytest.mark.parametrize("storage", [torch.float16, torch.bfloat16, torch.float8_e4m3fn])
def test_narrow_float_storage_is_restored_to_float32(tmp_path, storage):
    model = tiny_tcm(seed=6)
    sd = {k: v.to(storage) if v.is_floating_point() and not k.startswith("entropy_bottleneck") else v
          for k, v in model.state_dict().items()}
    path = tmp_path / "narrow.pth"
    torch.save(sd, path)
    loaded = load_model(path)
    w = loaded.state_dict()["g_a.0.conv1.weight"]
    assert w.dtype == torch.float32
    assert torch.equal(w, model.state_dict()["g_a.0.conv1.weight"].to(storage).float())


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": tiny_tcm().state_dict(), "extra": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refusing"):
        load_model(path)
    assert not marker.exists()


def test_mismatch_is_one_readable_error():
    sd = tiny_tcm().state_dict()
    sd["g_a.99.weight"] = torch.zeros(1)
    del sd["g_s.1.conv1_1.bias"]
    with pytest.raises(CheckpointError) as info:
        model_from_state_dict(sd)
    msg = str(info.value)
    assert "g_s.1.conv1_1.bias" in msg and "g_a.99.weight" in msg and "\n" not in msg


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"not a checkpoint at all", "not a checkpoint"),
    (bytes(range(256)) * 40, "not a checkpoint"),
    (b"PK\x03\x04garbage", "not a checkpoint"),
])
def test_unreadable_files_are_one_short_line(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        load_model(path)
    assert len(str(info.value)) < 120 + len(str(path)) and "\n" not in str(info.value)


def test_a_release_file_is_checked_against_the_hash_in_its_name(tmp_path):
    model = tiny_tcm(seed=7)
    model.update(force=True)
    data_path = tmp_path / "tmp.pth.tar"
    torch.save(model.state_dict(), data_path)
    data = bytearray(data_path.read_bytes())
    good = tmp_path / f"tiny-{hashlib.sha256(data).hexdigest()[:8]}.pth.tar"
    good.write_bytes(data)
    assert load_model(good).N == 32
    data[len(data) // 2] ^= 0x01  # one flipped bit inside a weight: torch would load it
    bad = tmp_path / good.name.replace("tiny-", "flipped-")
    bad.write_bytes(data)
    torch.load(bad, weights_only=True)
    with pytest.raises(CheckpointError, match="damaged: its sha256 begins"):
        load_model(bad)


def test_the_crcs_are_checked_where_no_hash_was(tmp_path, monkeypatch):
    """A release file whose sha256 matched skips the CRC pass (the hash covers every byte); a file without a
    hash in its name, or read with ``check_hash=False``, still gets it."""
    from models import checkpoint

    checked = []
    monkeypatch.setattr(checkpoint, "check_zip_crcs", checked.append)
    data_path = tmp_path / "tmp.pth.tar"
    torch.save(tiny_tcm(seed=7).state_dict(), data_path)
    release = tmp_path / f"tiny-{hashlib.sha256(data_path.read_bytes()).hexdigest()[:8]}.pth.tar"
    release.write_bytes(data_path.read_bytes())
    checkpoint.read_checkpoint(release)
    assert checked == []
    checkpoint.read_checkpoint(release, check_hash=False)
    checkpoint.read_checkpoint(data_path)
    assert checked == [str(release), str(data_path)]


@pytest.mark.parametrize("where", ["weight", "optimizer state"])
def test_a_checkpoint_with_a_damaged_byte_is_refused_in_one_line(tmp_path, where):
    """A training checkpoint whose zip part fails its CRC: torch.load alone reads it without a word."""
    import struct
    import zipfile

    model = tiny_tcm(seed=8)
    path = tmp_path / "checkpoint_latest.pth.tar"
    torch.save({"state_dict": model.state_dict(), "optimizer": {"m": torch.full((4096,), 0.5)}, "epoch": 3}, path)
    with zipfile.ZipFile(path) as z:  # the part holding the 4096-float moment, or the largest weight
        infos = [i for i in z.infolist() if "/data/" in i.filename]
        part = max(infos, key=lambda i: i.file_size) if where == "weight" else \
            next(i for i in infos if i.file_size == 4096 * 4)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", data, part.header_offset + 26)  # its local header's
    offset = part.header_offset + 30 + name_length + extra_length
    data[offset + part.file_size // 2] ^= 0x10  # one bit of the data, inside the part
    path.write_bytes(data)
    torch.load(path, weights_only=True)  # what torch alone does: loads it
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert str(e.value) == (f"{path} is damaged: its part {part.filename} fails its CRC-32 check (copy it again)")


def test_missing_file_and_foreign_content(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pth")
    path = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"weight": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match="not a TCM checkpoint"):
        load_model(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="no state_dict"):
        load_model(path)


def test_a_small_file_claiming_a_huge_model_is_refused_before_anything_is_built(tmp_path, monkeypatch):
    # Every entry stride-0 (saved from torch.zeros(1).expand(...)), N = 4096: a file of kilobytes
    # that describes gigabytes of weights.
    entries = {}
    for key, value in tiny_tcm().state_dict().items():
        shape = list(value.shape)
        if key in ("g_a.0.conv1.weight", "g_a.0.conv1.bias"):
            shape[0] = 8192
        entries[key] = torch.zeros(1, dtype=value.dtype).expand(shape) if value.numel() else value
    path = tmp_path / "huge.pth.tar"
    torch.save(entries, path)
    assert os.path.getsize(path) < 1 << 20

    def never(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(TCM, "__init__", never)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="claims .* but stores 4 bytes .a crafted file") as info:
        load_model(path)
    assert time.monotonic() - start < 5 and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="a crafted file"):  # the library entry point too
        TCM.from_state_dict(torch.load(path, weights_only=True))


@pytest.mark.slow
def test_non_regular_checkpoint_files_are_refused_without_reading(tmp_path):
    fifo = tmp_path / "ck.pth.tar"
    os.mkfifo(fifo)
    script = ("import sys\nfrom models import read_checkpoint, CheckpointError\n"
              "for path in sys.argv[1:]:\n"
              "    try:\n        read_checkpoint(path)\n    except CheckpointError as e:\n        print(e)\n")
    proc = subprocess.run([sys.executable, "-c", script, "/dev/zero", str(fifo), str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines() == [
        "checkpoint /dev/zero is a character device, not a regular file",
        f"checkpoint {fifo} is a FIFO (named pipe), not a regular file",
        f"checkpoint {tmp_path} is a folder, not a regular file",
    ], proc.stderr[-2000:]


def test_from_state_dict_takes_what_load_model_takes(tmp_path):
    """The authors' own line: TCM.from_state_dict(torch.load(file, weights_only=True)), whole dict or its state_dict."""
    torch.manual_seed(3)
    model = tiny_tcm(seed=7).eval()
    model.update(force=True)
    ck = published_layout(model)  # module. prefix, 2023 bottleneck names, training state beside
    path = tmp_path / "published.pth.tar"
    torch.save(ck, path)
    loaded = torch.load(path, weights_only=True)
    expected = load_model(path)
    x = torch.rand(1, 3, 128, 128)
    for obj in (loaded, loaded["state_dict"]):
        net = TCM.from_state_dict(obj).eval()
        assert net.model_config == expected.model_config
        got, want = net.state_dict(), expected.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
        with torch.no_grad():
            assert torch.equal(net(x)["x_hat"], expected(x)["x_hat"])
        assert net.compress(x)["strings"] == expected.compress(x)["strings"]


def test_from_state_dict_says_what_is_missing_and_what_was_found():
    foreign = {"module.encoder.conv.weight": torch.zeros(4, 3, 3, 3), "module.encoder.conv.bias": torch.zeros(4)}
    with pytest.raises(ValueError, match=r"missing g_a\.0\.conv1\.weight \(found 2 entries: encoder\.conv\.bias, "
                                         r"encoder\.conv\.weight\)"):
        TCM.from_state_dict(foreign)
    with pytest.raises(ValueError, match=r"no state_dict of tensors \(found a list\)"):
        TCM.from_state_dict([1, 2])
    sd = tiny_tcm().state_dict()
    sd["g_s.0.conv.weight"] = torch.zeros(1, 1, 3, 3)
    with pytest.raises(ValueError, match="checkpoint does not fit the model: size mismatch for g_s.0.conv.weight"):
        TCM.from_state_dict(sd)
