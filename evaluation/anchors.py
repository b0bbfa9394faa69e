"""The published anchors that ship with the project, and how ``eval.py --anchor`` names them.

``evaluation/data/anchors/<set>/<name>.json`` holds, in CompressAI's results
format, published rate–distortion points on Kodak, Tecnick and CLIC 2020
professional validation: the paper's TCM-S/M/L (``paper-tcm-small``,
``paper-tcm-middle``, ``paper-tcm-large``) on all three, and on Kodak and CLIC
the codecs the field compares against (``vtm``, ``hm``, ``bpg``, ``av1``,
``jpeg``, ``jpeg2000``, ``webp``) and CompressAI's learned models
(``compressai-*``), plus ELIC and Minnen 2020 on Kodak.  Each file's
``source`` says where its figures come from.  A name is looked up in the set
of the images evaluated: told by ``--anchor-set``, or recognised from the
``--data`` folders' names (:func:`recognise_set`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from utils.cli import UsageError

ANCHORS_DIR = Path(__file__).resolve().parent / "data" / "anchors"
#: Anchor sets, and the words in a folder's name that say its images are that set.
SETS: dict[str, tuple[str, ...]] = {
    "kodak": ("kodak",),
    "tecnick": ("tecnick", "testimages"),
    "clic2020-professional": ("clic",),
}


def names(anchor_set: str) -> list[str]:
    """The built-in anchors of a set, by name."""
    return sorted(p.stem for p in (ANCHORS_DIR / anchor_set).glob("*.json"))


def recognise_set(data: Sequence[str | os.PathLike]) -> str | None:
    """The anchor set the ``--data`` arguments are, by the names of their folders; None if unknown or mixed.

    A folder whose name holds ``kodak``, ``tecnick`` (or ``testimages``) or
    ``clic`` (but not ``mobile``: only CLIC's professional set has anchors)
    is that set; an image file counts by its folder; where a folder's own
    name says nothing, the two above it are asked (``/data/kodak/images``).
    """
    found = set()
    for item in data:
        path = Path(item).resolve()
        folder = path if path.is_dir() else path.parent
        for level in [folder, *folder.parents][:3]:
            word = level.name.lower()
            matches = {s for s, keys in SETS.items() if any(k in word for k in keys)}
            if "mobile" in word:
                matches.discard("clic2020-professional")
            if matches:
                break
        if len(matches) != 1:
            return None
        found |= matches
    return found.pop() if len(found) == 1 else None


def is_name(arg: str) -> bool:
    """Whether an ``--anchor`` argument is a built-in name rather than a file (no folder, no extension)."""
    return not Path(arg).exists() and os.sep not in arg and "/" not in arg and not arg.endswith(".json")


def resolve(args: Sequence[str], anchor_set: str | None, data: Sequence[str | os.PathLike]) -> list[Path]:
    """The files ``--anchor`` names: files as given, built-in names from the set evaluated.

    The set is ``anchor_set`` or, without it, the one ``data`` is recognised
    as; a name that the set lacks, or a name where the set cannot be told, is
    a usage error saying what to give.
    """
    files = []
    chosen = anchor_set or None
    for arg in args:
        if not is_name(arg):
            files.append(Path(arg))
            continue
        if chosen is None:
            chosen = recognise_set(data)
            if chosen is None:
                raise UsageError(f"--anchor {arg}: cannot tell which data set {' '.join(map(str, data))} is from the "
                                 f"folder names; give --anchor-set ({', '.join(SETS)})")
        known = names(chosen)
        if arg not in known:
            raise UsageError(f"--anchor {arg}: no such built-in anchor for {chosen} (choose from {', '.join(known)}, "
                             "or give a results file)")
        files.append(ANCHORS_DIR / chosen / f"{arg}.json")
    return files
