"""What eval.py's, bench.py's and portability.py's command lines need before torch is loaded.

Names, choices and defaults only: nothing here imports torch, NumPy or
Pillow, so that ``--help`` and a wrong option answer at once.
"""

from __future__ import annotations

import time
from typing import Callable

#: Classical codecs measured with Pillow: name -> (Pillow format, feature to check, display name).
CODECS: dict[str, tuple[str, str, str]] = {
    "jpeg": ("JPEG", "jpg", "JPEG"),
    "webp": ("WEBP", "webp", "WebP"),
    "avif": ("AVIF", "avif", "AVIF"),
}

#: bench.py's measurements, in the order they run.
MEASURES = ("forward", "compress", "decompress", "train")

#: wall: elapsed time.  cpu: this process's CPU time, which with ``--threads 1``
#: is the compute time even on a machine other jobs are loading.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
