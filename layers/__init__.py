"""Building blocks of TCM (everything else comes from CompressAI and timm)."""

from .gemm_conv import GemmConv2d, use_gemm_convs
from .swatten import SWAtten
from .swin import SwinBlock, SwinBlockPair
from .tcm_block import ConvTransBlock
from .window_attention import WindowAttention

__all__ = ["ConvTransBlock", "GemmConv2d", "SWAtten", "SwinBlock", "SwinBlockPair", "WindowAttention", "use_gemm_convs"]
