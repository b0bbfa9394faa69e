"""Building blocks of TCM (everything else comes from CompressAI and timm)."""

from .swatten import SWAtten
from .swin import SwinBlock, SwinBlockPair
from .tcm_block import ConvTransBlock
from .window_attention import WindowAttention

__all__ = ["ConvTransBlock", "SWAtten", "SwinBlock", "SwinBlockPair", "WindowAttention"]
