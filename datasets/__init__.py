"""Image reading and datasets (the names below load from their modules on first use)."""

from typing import TYPE_CHECKING

from utils.light_imports import lazy_exports

if TYPE_CHECKING:
    from .folder import DatasetError, PatchDataset, find_splits, readable_images, split_paths
    from .images import IMAGE_EXTENSIONS, ImageReadError, list_images, open_rgb, to_image, to_tensor

__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(("IMAGE_EXTENSIONS", "ImageReadError", "list_images", "open_rgb", "to_image", "to_tensor"),
                    "images"),
    **dict.fromkeys(("DatasetError", "PatchDataset", "find_splits", "readable_images", "split_paths"), "folder"),
})

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "list_images", "open_rgb", "to_image", "to_tensor",
           "DatasetError", "PatchDataset", "find_splits", "readable_images", "split_paths"]
