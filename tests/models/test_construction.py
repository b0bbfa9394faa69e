"""Models built to receive weights (models/construction.py): no random initialisation, the same model."""

from __future__ import annotations

import pytest
import torch

from datasets import to_tensor
from models import TCM, read_checkpoint
from models.config import TCMConfig
from models.construction import load_weights, uninitialised_parameters
from models.state_dict import module_keys, weights_of
from tests.helpers import ROOT, codec_checkpoint, synthetic_photo

(DEMO,) = (ROOT / "pretrained").glob("tcm-demo-mse-0.013-*.pth.tar")


def built_as_before(obj) -> TCM:
    """A model built with its random initialisation, then loaded with CompressAI's load_state_dict."""
    weights = weights_of(obj)
    model = TCM.from_config(TCMConfig.from_state_dict(weights))
    model.load_state_dict(weights)
    return model


def test_loading_a_checkpoint_draws_no_random_numbers():
    """The random initialisation that loading replaces does not run: torch's random state is untouched."""
    obj = read_checkpoint(DEMO)
    state = torch.get_rng_state()
    TCM.from_state_dict(obj)
    assert torch.equal(torch.get_rng_state(), state)
    with uninitialised_parameters() as skipped:
        TCM.from_config(TCMConfig.from_state_dict(weights_of(obj)))
    assert skipped.skipped > 100  # every layer's initialisers, timm's truncated normal included


@pytest.mark.parametrize("source", ["release", "training"])
def test_a_model_built_without_initialisation_is_the_same_model(tmp_path, source):
    """Every parameter and buffer (the attention layers' index buffers, not in any state dict, included), the
    forward pass and the coded bytes are those of a model built and loaded as before."""
    path = DEMO if source == "release" else codec_checkpoint(tmp_path / "ck.pth.tar", seed=3, training=True)
    obj = read_checkpoint(path)
    before, now = built_as_before(obj), TCM.from_state_dict(obj)
    a, b = dict(before.named_buffers()), dict(now.named_buffers())
    assert a.keys() == b.keys() and any("_rel_index" in k for k in a)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
    for (name, p), (_, q) in zip(before.named_parameters(), now.named_parameters(), strict=True):
        assert torch.equal(p, q) and p.requires_grad == q.requires_grad, name
    x = torch.nn.functional.pad(to_tensor(synthetic_photo(128, 192, seed=2)), (32, 32, 0, 0))
    for model in (before, now):
        model.update(force=False)
        model.eval()
    with torch.no_grad():
        assert torch.equal(before(x)["x_hat"], now(x)["x_hat"])
        assert before.compress(x)["strings"] == now.compress(x)["strings"]


def test_load_weights_is_compressais_load_state_dict():
    """The same tables resized and the same keys reported, in one scan instead of one per submodule."""
    obj = weights_of(read_checkpoint(DEMO))
    sd = {k: v for k, v in obj.items() if k != "g_s.1.conv1_1.bias"}
    sd["g_a.99.weight"] = torch.zeros(1)
    config = TCMConfig.from_state_dict(obj)
    torch.manual_seed(0)
    ours = TCM.from_config(config)
    torch.manual_seed(0)
    theirs = TCM.from_config(config)
    # load_weights takes the module tree's names (TCM.from_state_dict turns the published ones into them)
    assert load_weights(ours, module_keys(ours, sd)) == tuple(map(list, theirs.load_state_dict(sd, strict=False)))
    for (name, t), (_, u) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
        assert t.shape == u.shape and torch.equal(t, u), name
