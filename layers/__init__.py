"""Building blocks of TCM (everything else comes from CompressAI and timm)."""

from utils.light_imports import light_imports

light_imports()  # before the first import of CompressAI or timm

from .config import KernelPolicy, get_kernel_policy, inference_layout, kernel_policy, set_kernel_policy  # noqa: E402
from .gemm_conv import GemmConv2d, use_gemm_convs  # noqa: E402
from .swatten import SWAtten  # noqa: E402
from .swin import SwinBlock, SwinBlockPair  # noqa: E402
from .tcm_block import ConvTransBlock  # noqa: E402
from .window_attention import WindowAttention  # noqa: E402

__all__ = ["ConvTransBlock", "GemmConv2d", "KernelPolicy", "SWAtten", "SwinBlock", "SwinBlockPair", "WindowAttention",
           "get_kernel_policy", "inference_layout", "kernel_policy", "set_kernel_policy", "use_gemm_convs"]
