"""TCMConfig: defaults, checks, and the shape read off any TCM's weights (models/config.py)."""

from __future__ import annotations

import pytest
import torch

from models import TCM, TCMConfig, tcm_small
from tests.helpers import tiny_tcm
from tests.models.test_tcm import published_entries


def test_the_defaults_are_the_published_tcm_large():
    """TCMConfig() is the shape read off the published TCM-Large checkpoint's entries (tests/data, N=128),
    an independent record; TCM() with no arguments builds exactly those entries
    (tests/models/test_tcm.py::test_state_dict_equals_the_published_one[128])."""
    _, entries = published_entries()
    large = {key: torch.empty(shape[128], dtype=getattr(torch, dtype), device="meta") for key, dtype, shape in entries}
    assert TCMConfig.from_state_dict(large) == TCMConfig()
    small = {key: torch.empty(shape[64], dtype=getattr(torch, dtype), device="meta") for key, dtype, shape in entries}
    assert TCMConfig.from_state_dict(small) == TCMConfig(N=64)  # TCM-S differs in N only


@pytest.mark.parametrize("build", [
    lambda: tcm_small(),
    lambda: tiny_tcm(),
    lambda: tiny_tcm(config=(1, 2, 3, 3, 2, 1), max_support_slices=2, entropy_hidden=(48, 16), num_slices=4),
    lambda: TCM(N=16, M=32, num_slices=2, max_support_slices=2, hyper_channels=16, atten_dim=16, entropy_hidden=(16, 16),
                config=(1, 1, 1, 1, 1, 1), head_dim=(8, 8, 8, 8, 8, 8)),
], ids=["tcm-s", "tiny", "odd-shape", "n16"])
def test_from_state_dict_reads_back_the_constructor_arguments(build):
    model = build()
    assert TCMConfig.from_state_dict(model.state_dict()) == model.model_config
    assert TCM.from_config(model.model_config).model_config == model.model_config


def test_as_dict_is_plain_and_round_trips():
    config = TCMConfig(N=64, entropy_hidden=[32, 32])  # lists from JSON become tuples
    values = config.as_dict()
    assert values["entropy_hidden"] == [32, 32] and isinstance(values["head_dim"], list)
    assert TCMConfig.from_dict(values) == config
    with pytest.raises(TypeError):
        config.replace(hyper_chanels=3)


@pytest.mark.parametrize("changes, message", [
    ({"N": 48}, "N=48"),
    ({"M": 100, "num_slices": 3}, "M=100"),
    ({"atten_dim": 40}, "atten_dim=40"),
    ({"entropy_hidden": (32,)}, "entropy_hidden"),
    ({"config": (2, 2, 2)}, "six stages"),
    ({"drop_path_rate": 1.5}, "drop_path_rate"),
])
def test_impossible_shapes_are_refused_naming_the_argument(changes, message):
    with pytest.raises(ValueError, match=message):
        TCMConfig(**changes)


def test_weights_that_are_not_tcms_are_a_value_error():
    with pytest.raises(ValueError, match="not a TCM checkpoint"):
        TCMConfig.from_state_dict({"conv.weight": tiny_tcm().g_a[0].conv1.weight})


@pytest.mark.parametrize("changes, message", [
    ({"N": 4096}, "N=4096 is beyond"),
    ({"M": 4000, "num_slices": 5}, "M=4000 is beyond"),
    ({"hyper_channels": 1 << 20}, "hyper_channels=1048576 is beyond"),
    ({"entropy_hidden": (224, 5000)}, "entropy_hidden=5000 is beyond"),
    ({"config": (2, 2, 100, 2, 2, 2)}, "blocks per stage=100 is beyond"),
])
def test_configurations_are_bounded(changes, message):
    with pytest.raises(ValueError, match=message):
        TCMConfig(**changes)


def test_weights_claiming_a_huge_model_are_refused_before_it_is_built(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a model was built")

    sd = tiny_tcm().state_dict()
    sd["g_a.0.conv1.weight"] = torch.zeros(8192, 3, 3, 3)  # N = 4096, stored for real (0.9 MB)
    monkeypatch.setattr(TCM, "__init__", never)
    with pytest.raises(ValueError, match="N=4096 is beyond"):
        TCM.from_state_dict(sd)


def test_below_32_channels_the_hyper_transforms_use_one_head_of_n():
    """The published hyper transforms' heads are 32 wide; a 16-channel test model has one head of 16."""
    assert TCMConfig().hyper_head_dim == 32 and TCMConfig(N=64).hyper_head_dim == 32
    small = TCM(N=16, M=32, num_slices=2, hyper_channels=16, atten_dim=16, entropy_hidden=(16, 16),
                config=(1, 1, 1, 1, 1, 1), head_dim=(8, 8, 8, 8, 8, 8))
    assert small.h_a[1].trans_block.msa.heads == 1 and small.h_a[1].trans_block.msa.head_dim == 16
    assert TCM(N=64).h_a[1].trans_block.msa.heads == 2
