"""Image reading and datasets."""

from .images import IMAGE_EXTENSIONS, ImageReadError, list_images, open_rgb, to_image, to_tensor

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "list_images", "open_rgb", "to_image", "to_tensor"]
from .folder import DatasetError, PatchDataset, find_splits, readable_images, split_paths

__all__ += ["DatasetError", "PatchDataset", "find_splits", "readable_images", "split_paths"]
