"""Building blocks of TCM (everything else comes from CompressAI and timm)."""

from utils.process import quiet_compressai_warnings

quiet_compressai_warnings()  # before the first import of CompressAI

from .config import DEFAULT_KERNELS, KernelPolicy, apply_kernel_policy, kernels_of  # noqa: E402
from .gemm_conv import GemmConv2d  # noqa: E402
from .swatten import SWAtten  # noqa: E402
from .swin import SwinBlock, SwinBlockPair  # noqa: E402
from .tcm_block import ConvTransBlock  # noqa: E402
from .window_attention import WindowAttention  # noqa: E402

__all__ = ["ConvTransBlock", "DEFAULT_KERNELS", "GemmConv2d", "KernelPolicy", "SWAtten", "SwinBlock", "SwinBlockPair",
           "WindowAttention", "apply_kernel_policy", "kernels_of"]
