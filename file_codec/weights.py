"""Finding the weights a ``.tcm`` file names, as an image viewer finds its codec.

A file records the weights id of the model that made it
(:func:`file_codec.codec.weights_id`, over the parameters' values: a release
file and the training checkpoint it came from share it; the hash in a release
file's name is the sha256 of the file's bytes and does not).  Decoding
without ``--checkpoint`` looks for those weights in ``pretrained/`` beside
``codec.py``, then in the folders of ``$TCM_WEIGHTS_PATH`` (separated by
``os.pathsep``), in that order.

Telling a checkpoint's weights id needs loading it (about a second for a demo
model, more for TCM-Large), so the ids found are remembered in a small index
in the user's cache folder (``$XDG_CACHE_HOME/tcm/weights-ids.json``, or
``~/.cache/...``), keyed by path, size and modification time: a later lookup
loads only the file that matches, and ``codec.py info`` answers from the
index alone, without torch.  An index entry is a hint: the weights of a file
found through it are checked after loading, and a wrong or stale entry is
corrected.  An index that cannot be read or written is ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from utils import ROOT
from utils.cli import ToolError
from utils.files import CHECKPOINT_SUFFIXES, write_text_atomic

from .settings import CodecError

if TYPE_CHECKING:
    from .codec import Codec

#: Folders of weights, beside the shipped ``pretrained/``.
WEIGHTS_PATH_ENV = "TCM_WEIGHTS_PATH"
#: The release files that come with the code.
SHIPPED = ROOT / "pretrained"
INDEX_VERSION = 1


def search_folders() -> list[Path]:
    """``pretrained/`` then each folder of ``$TCM_WEIGHTS_PATH``, each once, in the order looked in."""
    folders, seen = [], set()
    for entry in [str(SHIPPED), *os.environ.get(WEIGHTS_PATH_ENV, "").split(os.pathsep)]:
        if not entry:
            continue
        folder = Path(entry).expanduser()
        key = os.path.realpath(folder)
        if key not in seen:
            seen.add(key)
            folders.append(folder)
    return folders


def describe_places(folders: list[Path]) -> str:
    where = ", ".join(str(f) for f in folders)
    return where + ("" if os.environ.get(WEIGHTS_PATH_ENV) else f" (${WEIGHTS_PATH_ENV} is not set)")


def candidates(folders: list[Path]) -> list[Path]:
    """The checkpoint files of ``folders`` (not recursive; dotfiles and non-regular files left out)."""
    found = []
    for folder in folders:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                regular = entry.is_file()
            except OSError:
                continue
            if regular and not entry.name.startswith(".") and entry.name.endswith(CHECKPOINT_SUFFIXES):
                found.append(Path(entry.path))
    return found


def index_path() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "tcm" / "weights-ids.json"


#: What the index says of a file it has not seen (or that changed since).
UNKNOWN = "?"


@dataclass
class WeightsIndex:
    """Weights ids of checkpoint files, by absolute path, valid while size and mtime stay."""

    path: Path = field(default_factory=index_path)
    entries: dict[str, dict] = field(default_factory=dict)
    changed: bool = False

    def __post_init__(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
            if doc.get("version") == INDEX_VERSION and isinstance(doc.get("files"), dict):
                self.entries = {k: v for k, v in doc["files"].items() if isinstance(v, dict)}
        except (OSError, ValueError, AttributeError):
            self.entries = {}

    @staticmethod
    def _key(file: Path) -> tuple[str, list[int]]:
        st = file.stat()
        return os.path.abspath(file), [st.st_size, st.st_mtime_ns]

    def lookup(self, file: Path) -> str | None:
        """The weights id (hex) remembered for ``file``; None for a file that is not a usable checkpoint;
        :data:`UNKNOWN` if the file is new or changed."""
        try:
            key, stamp = self._key(file)
        except OSError:
            return None
        entry = self.entries.get(key)
        if entry is None or entry.get("stamp") != stamp:
            return UNKNOWN
        return entry.get("weights_id")

    def remember(self, file: Path, weights_id: str | None) -> None:
        try:
            key, stamp = self._key(file)
        except OSError:
            return
        self.entries[key] = {"stamp": stamp, "weights_id": weights_id}
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        try:
            live = {k: v for k, v in self.entries.items() if os.path.exists(k)}
            write_text_atomic(self.path, json.dumps({"version": INDEX_VERSION, "files": live}, indent=1) + "\n")
            self.changed = False
        except OSError:
            pass  # a read-only home: the lookup still works, only slower next time


@dataclass
class Located:
    """Where the index says some weights are, without loading anything (``codec.py info``)."""

    file: Path | None  # a file whose remembered id matches
    unchecked: int  # checkpoint files whose weights the index does not know yet
    places: str


def locate(weights_id: bytes, index: WeightsIndex | None = None) -> Located:
    index = index or WeightsIndex()
    folders = search_folders()
    unchecked = 0
    for file in candidates(folders):
        known = index.lookup(file)
        if known == weights_id.hex():
            return Located(file, unchecked, describe_places(folders))
        unchecked += known == UNKNOWN
    return Located(None, unchecked, describe_places(folders))


class WeightsFinder:
    """The codec for a file's weights id, looked up in the search folders; one load per weights."""

    def __init__(self, load: Callable[[Path], "Codec"], index: WeightsIndex | None = None):
        self.load = load
        self.index = index or WeightsIndex()
        self.found: dict[bytes, "Codec"] = {}

    def codec_for(self, weights_id: bytes, tables_id: bytes | None = None) -> "Codec":
        """The codec of the first file, in the order looked in, with these weights (and coding tables, if
        given).  A file that cannot be loaded (damaged: its CRCs fail) is skipped for the next; so is one
        with the weights but other tables, unless no file has both: it is then the one returned, and
        decoding says whose tables differ."""
        key = (weights_id, tables_id)
        if key in self.found:
            return self.found[key]
        wanted = weights_id.hex()
        folders = search_folders()
        files = candidates(folders)
        remembered = {f: self.index.lookup(f) for f in files}
        # Files the index names first; then those it has not seen.  Every one is checked once loaded.
        order = [f for f in files if remembered[f] == wanted] + [f for f in files if remembered[f] == UNKNOWN]
        other_tables = None
        try:
            for file in order:
                try:
                    codec = self.load(file)
                except ToolError:  # not a checkpoint, or damaged: remembered as such, skipped
                    self.index.remember(file, None)
                    continue
                self.index.remember(file, codec.id_hex)
                if codec.weights_id != weights_id:
                    continue
                if tables_id is None or codec.tables_id == tables_id:
                    self.found[key] = codec
                    return codec
                other_tables = other_tables or codec
        finally:
            self.index.save()
        if other_tables is not None:
            return other_tables
        raise CodecError(
            f"made with weights {wanted}, found in none of the {len(files)} checkpoint files of "
            f"{describe_places(folders)}: pass --checkpoint CK, set TCM_CHECKPOINT, or add the folder holding "
            f"those weights to ${WEIGHTS_PATH_ENV}"
        )
