"""The shape of a TCM model: its constructor arguments, their defaults and their checks.

One object says what a model is, for the constructor, for ``train.py``'s
options and for checkpoints: :meth:`TCMConfig.from_state_dict` reads it off
the weights, so any checkpoint rebuilds the model it came from.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # torch loads when a state dict is read, not for the defaults (train.py --help)
    from torch import Tensor

#: Largest values a configuration may take (the published TCM-Large: N 128, M 320,
#: hyper_channels 192, atten_dim 128, entropy_hidden 224/128, 5 slices, 2 blocks a stage).
#: A checkpoint is read by building the model its shapes describe, before its entries
#: can be compared: these keep a crafted file from making that model arbitrarily large.
LIMITS = {"N": 512, "M": 1280, "num_slices": 64, "hyper_channels": 1024, "atten_dim": 1024,
          "entropy_hidden": 1024, "blocks per stage": 16}


#: Head size of the published hyper transforms' Swin blocks (window 4).
HYPER_HEAD_DIM = 32


@dataclass(frozen=True)
class TCMConfig:
    """TCM's constructor arguments; the defaults are the published TCM-Large.

    Small and Middle differ only in N (64, 96).  ``hyper_channels``,
    ``atten_dim`` and ``entropy_hidden`` exist for smaller research and demo
    models: at their defaults the network is exactly the published one.
    """

    config: tuple[int, ...] = (2, 2, 2, 2, 2, 2)  # TCM blocks per stage (g_a: 0-2, g_s: 3-5)
    head_dim: tuple[int, ...] = (8, 16, 32, 32, 16, 8)  # attention head size per stage
    drop_path_rate: float = 0.0
    N: int = 128
    M: int = 320
    num_slices: int = 5
    max_support_slices: int = 5
    hyper_channels: int = 192
    atten_dim: int = 128
    entropy_hidden: tuple[int, int] = (224, 128)

    def __post_init__(self) -> None:
        for name in ("config", "head_dim", "entropy_hidden"):  # lists from JSON or the command line
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError, naming the argument, for a shape TCM cannot be built with."""
        if len(self.config) != 6 or len(self.head_dim) != 6 or any(n < 1 for n in self.config):
            raise ValueError("config and head_dim need one positive entry per stage (six stages)")
        if len(self.entropy_hidden) != 2 or min(self.entropy_hidden) < 1:
            raise ValueError(f"entropy_hidden={list(self.entropy_hidden)} needs two positive widths")
        # The hyper transforms' Swin blocks use heads of 32 channels (below 32: one head of N).
        if self.N <= 0 or self.N % self.hyper_head_dim or any(hd <= 0 or self.N % hd for hd in self.head_dim):
            raise ValueError(f"N={self.N} must be a positive multiple of 32 (or below 32) and of every "
                             "head_dim (attention head size)")
        if self.M <= 0 or self.num_slices <= 0 or self.M % self.num_slices:
            raise ValueError(f"M={self.M} must be a positive multiple of num_slices={self.num_slices}")
        if self.atten_dim <= 0 or self.atten_dim % 16:
            raise ValueError(f"atten_dim={self.atten_dim} must be a positive multiple of 16 (SWAtten's heads)")
        if self.hyper_channels <= 0:
            raise ValueError(f"hyper_channels={self.hyper_channels} must be positive")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate={self.drop_path_rate} must be in [0, 1)")
        sizes = {"N": self.N, "M": self.M, "num_slices": self.num_slices, "hyper_channels": self.hyper_channels,
                 "atten_dim": self.atten_dim, "entropy_hidden": max(self.entropy_hidden),
                 "blocks per stage": max(self.config)}
        for name, value in sizes.items():
            if value > LIMITS[name]:
                raise ValueError(f"{name}={value} is beyond the largest this implementation builds "
                                 f"({LIMITS[name]}; TCM-Large has N=128)")

    @property
    def hyper_head_dim(self) -> int:
        """Head size of the hyper transforms' Swin blocks: the published 32 (one head of N below 32)."""
        return min(HYPER_HEAD_DIM, self.N)

    def replace(self, **changes: Any) -> "TCMConfig":
        """A copy with ``changes``; unknown names are a TypeError."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples): what a checkpoint stores."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TCMConfig":
        return cls(**values)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, Tensor]) -> "TCMConfig":
        """The shape of the model these weights belong to; ValueError if they are not TCM's.

        ``drop_path_rate`` is not visible in weights and stays 0 (inference).
        Entries that claim more elements than they store are refused first
        (:func:`check_stored`), and the configuration is bounded (:data:`LIMITS`),
        so nothing large is built for a small crafted file.
        """
        check_stored(sd)
        try:
            N = sd["g_a.0.conv1.weight"].shape[0] // 2
            M = sd["h_a.0.conv1.weight"].shape[1]
            num_slices = _count(sd, r"cc_mean_transforms\.(\d+)\.")
            slice_ch = M // num_slices
            supports = [(sd[f"atten_mean.{i}.0.in_conv.weight"].shape[1] - M) // slice_ch for i in range(num_slices)]
            most = max(supports)
            max_support = num_slices if most >= num_slices - 1 else most
            blocks, heads = [], []
            for stage in ("g_a", "g_s"):
                idx = sorted(int(m.group(1)) for k in sd
                             if (m := re.match(rf"{stage}\.(\d+)\.trans_block\.msa\.relative_position_params$", k)))
                # Stages are separated by the strided/upsampling residual blocks: consecutive indices.
                groups: list[list[int]] = []
                for i in idx:
                    if groups and i == groups[-1][-1] + 1:
                        groups[-1].append(i)
                    else:
                        groups.append([i])
                if len(groups) != 3:
                    raise ValueError(f"expected 3 stages of TCM blocks in {stage}, found {len(groups)}")
                blocks += [len(g) for g in groups]
                heads += [sd[f"{stage}.{g[0]}.trans_block.msa.relative_position_params"].shape[0] for g in groups]
            return cls(
                config=tuple(blocks),
                head_dim=tuple(N // h for h in heads),
                N=N,
                M=M,
                num_slices=num_slices,
                max_support_slices=max_support,
                hyper_channels=sd[_last_conv(sd, "h_a")].shape[0],
                atten_dim=sd["atten_mean.0.0.in_conv.weight"].shape[0],
                entropy_hidden=(sd["cc_mean_transforms.0.0.weight"].shape[0],
                                sd["cc_mean_transforms.0.2.weight"].shape[0]),
            )
        except KeyError as e:
            keys = sorted(sd)
            shown = ", ".join(keys[:4]) + (f" … (+{len(keys) - 4})" if len(keys) > 4 else "")
            raise ValueError(f"not a TCM checkpoint: missing {e.args[0]} (found {len(keys)} entries: "
                             f"{shown})") from None
        except (IndexError, ZeroDivisionError) as e:
            raise ValueError(f"not a TCM checkpoint: {e}") from None


def check_stored(sd: Mapping[str, Any]) -> None:
    """ValueError for an entry that is not a dense tensor holding every element it claims.

    A tensor saved from ``torch.zeros(1).expand(8192, 8192)`` keeps one
    element and claims 67 million: a few such entries in a file of kilobytes
    describe a model of gigabytes, which building it, or converting the
    entry to float32, would allocate.  Weights written by training never
    share elements within one tensor.
    """
    import torch

    for key, value in sd.items():
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
            raise ValueError(f"not a TCM checkpoint: {key} is not a dense tensor")
        claimed = value.numel() * value.element_size()
        stored = value.untyped_storage().nbytes()
        if claimed > stored:
            raise ValueError(f"not a TCM checkpoint: {key} claims {'x'.join(map(str, value.shape))} elements "
                             f"({claimed} bytes) but stores {stored} bytes (a crafted file)")


def _count(sd: Mapping[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def _last_conv(sd: Mapping[str, Any], stage: str) -> str:
    """The key of the last plain conv weight of ``stage`` (h_a's output conv)."""
    idx = [int(m.group(1)) for k in sd if (m := re.match(rf"{stage}\.(\d+)\.weight$", k))]
    if not idx:
        raise KeyError(f"{stage}.<last>.weight")
    return f"{stage}.{max(idx)}.weight"
