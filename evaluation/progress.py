"""Finished per-image rows kept on disk as they come, so that an interrupted evaluation continues.

Beside ``--output results.json`` an evaluation appends each finished image's
row to ``results.json.partial.jsonl`` (one JSON line, flushed at once).
``--resume`` takes the rows whose key matches the run being asked for
(:func:`row_key`: checkpoint sha256, mode, tile side, device, image name and
the image's pixels) and evaluates only the rest; a run that finishes removes
the file.  A line that is not a row (cut short by a kill, damaged, not
UTF-8) is left out with a note, its image evaluated again; the rows read are
written back as a file of its own before new ones are appended, so a link
placed at that name is replaced and what it points to is never written.

An image is identified by the sha256 of its decoded 8-bit RGB pixels (and
size), not of its file: that is exactly what a row was computed from, so the
same picture saved again (other PNG compression, metadata) still matches,
while a different image under the same name, or the same file read
differently by a changed conversion, does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from PIL import Image

from utils.files import open_own_file, open_regular_file, write_text_atomic

from .results import json_safe

Key = tuple[str, str, int, str, str, str]  # checkpoint sha256, mode, tile side (0: whole), device, image, pixels
KEY_FIELDS = 6


def image_digest(img: Image.Image) -> str:
    """sha256 of the decoded image: mode, size and pixel bytes."""
    h = hashlib.sha256(f"{img.mode} {img.width}x{img.height}\n".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def row_key(checkpoint_sha256: str, mode: str, tile: int, device: str, image_name: str, digest: str) -> Key:
    """What a kept row must match to be reused: the weights, how they were run, and the very pixels."""
    return checkpoint_sha256, mode, tile, device, image_name, digest


def partial_path(output: str | os.PathLike) -> Path:
    out = Path(output)
    return out.with_name(out.name + ".partial.jsonl")


def _line(key: Key, row: dict[str, Any]) -> str:
    return json.dumps({"key": list(key), "row": json_safe(row)}) + "\n"


def read_rows(path: Path) -> tuple[list[tuple[Key, dict[str, Any]]], int]:
    """The (key, row) entries of a rows file, and how many of its lines are not one.

    A line is taken only if it is UTF-8 JSON of the form :class:`RowStore`
    writes; any other (cut short by a kill, or bytes of something else) is
    counted and left out, so that a damaged file costs only its rows.
    """
    entries, unreadable = [], 0
    with open_regular_file(path) as f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw.decode("utf-8"))
                key, row = tuple(entry["key"]), entry["row"]
                if not isinstance(row, dict) or len(key) != KEY_FIELDS:
                    raise TypeError
                hash(key)
            except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):
                unreadable += 1
                continue
            entries.append((key, row))
    return entries, unreadable


class RowStore:
    """The rows of this evaluation that are already done (resumed) and the file new ones go to."""

    def __init__(self, output: str | os.PathLike | None, resume: bool):
        self.path = partial_path(output) if output else None
        self.done: dict[Key, dict[str, Any]] = {}
        self.added = 0
        self._file = None
        if self.path is None:
            return
        if resume and self.path.exists():
            entries, unreadable = read_rows(self.path)
            self.done = {key: row for key, row in entries}
            if unreadable:
                print(f"note: {unreadable} line(s) of {self.path} are not rows (cut short by a kill, or not "
                      "written by eval.py): left out, their images evaluated again", file=sys.stderr)
            # The rows read, rewritten as a file of its own: a link is replaced, never written through.
            write_text_atomic(self.path, "".join(_line(key, row) for key, row in entries))
        elif not resume and self.path.exists() and self.path.stat().st_size:
            print(f"note: starting afresh; {self.path} held rows of an earlier, interrupted run "
                  "(--resume would have continued it)", file=sys.stderr)
        # Without --resume an old file is replaced: its rows may belong to other weights or images.
        self._file = os.fdopen(open_own_file(self.path, "a" if resume else "w"), "a", encoding="utf-8")

    def match(self, wanted: Iterable[Key]) -> tuple[int, list[str]]:
        """(rows that will be reused, names of images evaluated again though a row of that checkpoint and
        name is kept: the image's pixels or the setting differ)."""
        wanted = list(wanted)
        reused = sum(k in self.done for k in wanted)
        kept_names = {(k[0], row.get("image")) for k, row in self.done.items()}
        again = [k[4] for k in wanted if k not in self.done and (k[0], k[4]) in kept_names]
        return reused, list(dict.fromkeys(again))

    def get(self, key: Key) -> dict[str, Any] | None:
        return self.done.get(key)

    def add(self, key: Key, row: dict[str, Any]) -> None:
        self.done[key] = row
        self.added += 1
        if self._file is not None:
            self._file.write(_line(key, row))
            self._file.flush()

    def close(self, finished: bool) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if finished and self.path is not None:
            self.path.unlink(missing_ok=True)
