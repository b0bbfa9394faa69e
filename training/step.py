"""One optimisation step of the paper's recipe, the one ``train.py`` and ``bench.py`` both run.

Loss: CompressAI's ``RateDistortionLoss`` (λ·255²·MSE + bpp, or λ·(1 − MS-SSIM)
+ bpp); optimizers: CompressAI's ``net_aux_optimizer`` (Adam on the network,
Adam on the bottleneck's quantiles); gradient clipping on the network's
parameters; mixed precision on CUDA with the entropy models kept in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from compressai.losses import RateDistortionLoss
from compressai.optimizers import net_aux_optimizer
from torch import Tensor

from models import TCM

from .distributed import Dist, all_sum, average_gradients


class NonFiniteLoss(Exception):
    """A NaN or infinite loss in some process: no step was taken."""

    def __init__(self, value: float):
        super().__init__(f"loss is not finite ({value})")
        self.value = value


def make_optimizers(net: TCM, lr: float, aux_lr: float) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam on the network (every parameter but the bottleneck's quantiles) and Adam on the quantiles."""
    opts = net_aux_optimizer(net, {"net": {"type": "Adam", "lr": lr}, "aux": {"type": "Adam", "lr": aux_lr}})
    return opts["net"], opts["aux"]


def keep_entropy_models_fp32(net: TCM) -> None:
    """Under autocast, run the entropy models in float32: likelihoods near 0 or 1 underflow in half."""
    for module in (net.entropy_bottleneck, net.gaussian_conditional):
        forward = module.forward

        def fp32_forward(*a, _forward=forward, **kw):
            with torch.autocast("cuda", enabled=False):
                return _forward(*(x.float() if torch.is_tensor(x) and x.is_floating_point() else x for x in a), **kw)

        module.forward = fp32_forward


#: --amp choices and their autocast dtypes.
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def autocast(amp: str | None):
    """CUDA autocast for ``--amp fp16|bf16`` (nothing for None)."""
    return torch.autocast("cuda", dtype=AMP_DTYPES.get(amp or "fp16", torch.float16), enabled=bool(amp))


def distortion_figures(losses: dict[str, Tensor], metric: str) -> dict[str, float]:
    """MSE and PSNR, or MS-SSIM, of a loss dict: what the logs show beside loss and bpp."""
    from metrics.quality import psnr_from_mse

    if metric == "mse":
        mse = losses["mse_loss"].item()
        return {"mse": mse, "psnr": psnr_from_mse(mse)}
    return {"ms_ssim": losses["ms_ssim_loss"].item()}


def float_outputs(out: dict) -> dict:
    """The model's outputs in float32 (after autocast), as the loss takes them."""
    return {"x_hat": out["x_hat"].float(), "likelihoods": {k: v.float() for k, v in out["likelihoods"].items()}}


@dataclass
class Optimization:
    """What a training step needs: the model, its two optimizers, the loss and their settings.

    ``model`` is ``net`` or its DistributedDataParallel wrapper; ``dist`` names
    the processes whose gradients and loss checks are shared.
    """

    net: TCM
    optimizer: torch.optim.Optimizer
    aux_optimizer: torch.optim.Optimizer
    criterion: nn.Module
    metric: str = "mse"
    clip_max_norm: float = 1.0
    amp: str | None = None  # None (float32), "fp16" or "bf16": autocast on CUDA
    dist: Dist = field(default_factory=Dist)
    model: nn.Module | None = None
    scaler: torch.amp.GradScaler | None = None

    def __post_init__(self) -> None:
        self.model = self.model or self.net
        # bfloat16 has float32's range: only float16 needs its gradients scaled.
        self.scaler = self.scaler or torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.main_params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.aux_params = [p for g in self.aux_optimizer.param_groups for p in g["params"]]

    @classmethod
    def paper_recipe(cls, net: TCM, lmbda: float, metric: str = "mse", lr: float = 1e-4, aux_lr: float = 1e-3,
                     **kwargs) -> "Optimization":
        """The paper's settings: Adam 1e-4, auxiliary Adam 1e-3, clipping at 1.0."""
        optimizer, aux_optimizer = make_optimizers(net, lr, aux_lr)
        return cls(net, optimizer, aux_optimizer, RateDistortionLoss(lmbda=lmbda, metric=metric), metric, **kwargs)


def train_step(o: Optimization, x: Tensor) -> dict[str, float]:
    """One step of both optimizers on batch ``x``; returns loss, bpp, distortion and aux figures.

    The loss is checked in every process before anything is updated: a
    non-finite loss anywhere raises :class:`NonFiniteLoss` and leaves the
    weights as they were.
    """
    o.optimizer.zero_grad(set_to_none=True)
    o.aux_optimizer.zero_grad(set_to_none=True)
    with autocast(o.amp):
        out = o.model(x)
    losses = o.criterion(float_outputs(out), x)
    loss = losses["loss"].item()
    if all_sum(o.dist, [0.0 if math.isfinite(loss) else 1.0])[0]:
        raise NonFiniteLoss(loss)
    o.scaler.scale(losses["loss"]).backward()
    if o.clip_max_norm > 0:
        o.scaler.unscale_(o.optimizer)
        nn.utils.clip_grad_norm_(o.main_params, o.clip_max_norm)
    o.scaler.step(o.optimizer)
    o.scaler.update()

    # The auxiliary loss fits the bottleneck's quantiles; DDP does not see this
    # backward, so its gradients are averaged here.
    aux_loss = o.net.aux_loss()
    aux_loss.backward()
    average_gradients(o.dist, o.aux_params)
    o.aux_optimizer.step()
    return {"loss": loss, "bpp": losses["bpp_loss"].item(), **distortion_figures(losses, o.metric),
            "aux": aux_loss.item()}
