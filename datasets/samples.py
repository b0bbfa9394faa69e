"""Sample photographs that ship inside scikit-image: test and demo images with no download."""

from __future__ import annotations

from pathlib import Path

from utils.files import save_image_atomic

#: scikit-image sample photographs (RGB, 300x451 to 512x512).
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def export_photos(folder: Path, names: tuple[str, ...] = PHOTOS) -> list[Path]:
    """Write the photographs to ``folder`` as PNG (each replacing what is there, a link included); their paths."""
    import numpy as np
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{name}.png"
        save_image_atomic(Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB"), path, "PNG")
        paths.append(path)
    return paths
