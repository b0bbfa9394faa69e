"""Models built to receive weights: no random initialisation that loading replaces, a loading pass in one scan.

Building TCM initialises every weight at random (Kaiming, truncated normal);
:meth:`models.TCM.from_state_dict` then replaces every one of them, so that
work is wasted.  Under :func:`uninitialised_parameters` the layers are built
as usual (every buffer computed as before: the attention layers' index
buffers, the entropy models' bounds) but what initialises weights does
nothing (torch.nn.init's initialisers, in-place random fills such as timm's
``trunc_normal_``, in-place operations on parameters): parameters are
allocated and left as they are until :func:`load_weights` fills them, and the
global random state is untouched.  The
weights loaded must then hold every parameter (strict loading), which
:meth:`~models.TCM.from_state_dict` checks.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import torch.nn as nn
from torch.overrides import TorchFunctionMode

#: torch.nn.init's initialisers: what layers call to fill their weights at random or with constants.
_INITIALISERS = frozenset(
    getattr(nn.init, name) for name in (
        "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
        "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
    ) if hasattr(nn.init, name)
)


#: In-place random fills of a tensor (what initialisers that are not torch.nn.init's, timm's, call).
_RANDOM_FILLS = frozenset(("uniform_", "normal_", "bernoulli_", "random_", "exponential_", "cauchy_", "log_normal_",
                           "geometric_"))


class _SkipInitialisers(TorchFunctionMode):
    """What initialises weights does nothing: torch.nn.init's initialisers, in-place random fills, and
    in-place operations on parameters; every other operation runs."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else next(iter(kwargs.values()), None)
        if (func in _INITIALISERS or name in _RANDOM_FILLS
                or (isinstance(target, nn.Parameter) and name.endswith("_") and not name.startswith("__"))):
            self.skipped += 1
            return target
        return func(*args, **kwargs)


@contextlib.contextmanager
def uninitialised_parameters() -> Iterator[_SkipInitialisers]:
    """Build modules whose parameters are allocated but not initialised (their weights are loaded next).

    Buffers are computed as usual; only the initialisers are skipped, so the
    global random state is left untouched.  The object yielded counts the
    calls skipped.
    """
    mode = _SkipInitialisers()
    with mode:
        yield mode


def load_weights(model: nn.Module, weights: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``model.load_state_dict(weights, strict=False)`` for a CompressAI model: (missing keys, unexpected keys).

    ``weights`` are named as the module tree names its entries (TCM's published
    names turned into them by ``models.state_dict.module_keys``), since the
    entropy models' tables are found by their module's name.

    CompressAI's ``CompressionModel.load_state_dict`` resizes its entropy
    models' table buffers to the file's and renames 2023 bottleneck entries
    before torch loads; it looks for the keys of every submodule in the whole
    state dict, a scan that grows with the square of the model.  Here only the
    entropy models are prepared (with CompressAI's own helpers), then torch loads.
    """
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional
    from compressai.models.utils import remap_old_keys, update_registered_buffers

    tables = ["_quantized_cdf", "_offset", "_cdf_length"]
    weights = dict(weights)
    for name, module in model.named_modules():
        if not isinstance(module, (EntropyBottleneck, GaussianConditional)):
            continue
        if not any(key.startswith(name) for key in weights):
            continue
        if isinstance(module, EntropyBottleneck):
            update_registered_buffers(module, name, tables, weights)
            weights = remap_old_keys(name, weights)
        else:
            update_registered_buffers(module, name, [*tables, "scale_table"], weights)
    missing, unexpected = nn.Module.load_state_dict(model, weights, strict=False)
    return list(missing), list(unexpected)

