"""Finished per-image rows kept on disk as they come, so that an interrupted evaluation continues.

Beside ``--output results.json`` an evaluation appends each finished image's
row to ``results.json.partial.jsonl`` (one JSON line, flushed at once).
``--resume`` takes the rows whose checkpoint (by sha256), mode, tile side and
image match the run being asked for, and evaluates only the rest; a run that
finishes removes the file.  A line cut short by a kill is ignored.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .results import json_safe

Key = tuple[str, str, int, str]  # checkpoint sha256, mode, tile side (0: whole), image name


def partial_path(output: str | os.PathLike) -> Path:
    out = Path(output)
    return out.with_name(out.name + ".partial.jsonl")


class RowStore:
    """The rows of this evaluation that are already done (resumed) and the file new ones go to."""

    def __init__(self, output: str | os.PathLike | None, resume: bool):
        self.path = partial_path(output) if output else None
        self.done: dict[Key, dict[str, Any]] = {}
        self.added = 0
        if self.path is not None and resume and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self.done[tuple(entry["key"])] = entry["row"]  # type: ignore[index]
                except (json.JSONDecodeError, KeyError, TypeError, RecursionError):
                    continue  # a line cut short by a kill
        self.resumed = len(self.done)
        self._file = None
        if self.path is not None and not resume and self.path.exists() and self.path.stat().st_size:
            print(f"note: starting afresh; {self.path} held rows of an earlier, interrupted run "
                  "(--resume would have continued it)", file=sys.stderr)
        if self.path is not None:
            # Without --resume an old file is replaced: its rows may belong to other weights or images.
            self._file = open(self.path, "a" if resume else "w")

    def get(self, key: Key) -> dict[str, Any] | None:
        return self.done.get(key)

    def add(self, key: Key, row: dict[str, Any]) -> None:
        self.done[key] = row
        self.added += 1
        if self._file is not None:
            self._file.write(json.dumps({"key": list(key), "row": json_safe(row)}) + "\n")
            self._file.flush()

    def close(self, finished: bool) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if finished and self.path is not None:
            self.path.unlink(missing_ok=True)
