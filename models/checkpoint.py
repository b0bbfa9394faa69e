"""Loading TCM weights from any checkpoint layout, safely.

Every entry point (eval, codec, updates, train's fine-tuning) goes through
:func:`load_model`.  Accepted: a bare state_dict or a dict holding
``"state_dict"`` (training checkpoints), keys with or without DataParallel's
``module.`` prefix, 2023 entropy-bottleneck names (``_matrix0`` …, remapped by
CompressAI), float16 storage (restored to float32).  The architecture is read
off the weights.  Files are unpickled with ``weights_only=True``: a file that
needs code to load is refused and nothing in it runs.  A release file, whose
name ends in the first 8 hex digits of its sha256 (``updates.py``, CompressAI's
convention), is checked against that hash before it is read; any other
checkpoint against the CRC-32 of each of its parts (a zip archive) that
``torch.load`` does not check.  The hash covers every byte the CRCs cover, so
a release file whose hash matched skips the CRCs (a second pass over its
1 600 parts).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from utils.cli import ToolError, first_line
from utils.files import CHECKPOINT_SUFFIXES, NotARegularFile, check_regular_file, sha256_file

from .integer_entropy import IntegerParameterError, stored_parameters
from .state_dict import weights_of
from .tcm import TCM

#: updates.py's release names: ``<name>-<first 8 hex digits of the file's sha256>.pth.tar``.
RELEASE_NAME = re.compile(r"^(?P<stem>.+)-(?P<hash>[0-9a-f]{8})\.pth\.tar$")


class CheckpointError(ToolError):
    """A checkpoint that cannot be used; the message is one readable line."""


def checkpoint_stem(path: str | os.PathLike) -> str:
    """The file name without its checkpoint suffix (``mse_lambda_0.05.pth.tar`` -> ``mse_lambda_0.05``)."""
    name = Path(path).name
    for suffix in CHECKPOINT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def release_stem(path: str | os.PathLike) -> str:
    """The name of a release file without its hash (``tcm-s-0123abcd.pth.tar`` -> ``tcm-s``)."""
    m = RELEASE_NAME.match(Path(path).name)
    return m.group("stem") if m else checkpoint_stem(path)


def display_name(path: str | os.PathLike) -> str:
    """What to call a checkpoint in tables, results and release names.

    A release file: its name less the hash.  ``train.py``'s files
    (``checkpoint_best``, ``checkpoint_latest``, ``checkpoint_epoch007``): the
    run folder's name (``mse_lambda_0.013``), with ``-latest`` or
    ``-epoch007`` for the ones that are not the best.  Anything else: its stem.
    """
    path = Path(path)
    stem = release_stem(path)
    m = re.fullmatch(r"checkpoint_(best|latest|epoch\d+)", stem)
    if m and path.resolve().parent.name:
        run = path.resolve().parent.name
        return run if m.group(1) == "best" else f"{run}-{m.group(1)}"
    return stem


def check_release_hash(path: str | os.PathLike) -> bool:
    """Refuse a release file whose bytes do not hash to the prefix its name carries; whether the file was
    checked (False: its name carries no hash)."""
    m = RELEASE_NAME.match(Path(path).name)
    if m is None:
        return False
    digest = sha256_file(path)
    if not digest.startswith(m.group("hash")):
        raise CheckpointError(f"{path} is damaged: its sha256 begins {digest[:8]}, its name says "
                              f"{m.group('hash')} (download or copy it again)")
    return True


def read_checkpoint(path: str | os.PathLike, check_hash: bool = True) -> Any:
    """``torch.load`` with ``weights_only=True``, errors turned into one-line CheckpointErrors."""
    path = os.fspath(path)
    try:
        check_regular_file(path)  # /dev/zero or a FIFO would be read forever
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except NotARegularFile as e:
        raise CheckpointError(f"checkpoint {path} {e}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path} is an empty file, not a checkpoint")
    hashed = check_hash and check_release_hash(path)
    if zipfile.is_zipfile(path):
        if not hashed:  # the sha256 of every byte was checked: the parts' CRCs add nothing
            check_zip_crcs(path)
    elif not _legacy_pickle(path):
        raise CheckpointError(f"{path} is not a checkpoint (not a file torch.save writes)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "GLOBAL" in str(e) or "global" in str(e):
            raise CheckpointError(
                f"refusing {path}: it is not a plain weights file (loading it would run code: {first})"
            ) from None
        raise CheckpointError(f"{path} is not a checkpoint ({first})") from None
    except Exception as e:  # zip/pickle corruption, truncation
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}".splitlines()[0]) from None


def check_zip_crcs(path: str) -> None:
    """Refuse a checkpoint (a zip archive) one of whose parts fails its CRC-32 check.

    ``torch.load`` does not check the CRCs the zip records: a flipped bit in a
    weight loads without a word.  Checking reads the file once more
    (``zipfile.testzip``); the load that follows reads it from the page cache.
    """
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, zlib.error) as e:
        raise CheckpointError(f"{path} is damaged ({first_line(e) or type(e).__name__}): copy it again") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or first_line(e)}") from None
    if bad is not None:
        raise CheckpointError(f"{path} is damaged: its part {bad} fails its CRC-32 check (copy it again)")


def _legacy_pickle(path: str) -> bool:
    """torch.save's pre-1.6 format starts with a pickle protocol 2 header."""
    with open(path, "rb") as f:
        return f.read(2) == b"\x80\x02"


def extract_state_dict(obj: Any) -> dict[str, Tensor]:
    """The model weights inside a loaded checkpoint (``models.state_dict.weights_of``), as a CheckpointError."""
    try:
        return weights_of(obj)
    except ValueError as e:
        raise CheckpointError(f"checkpoint holds {e}" if str(e).startswith("no state_dict") else str(e)) from None


def model_from_state_dict(checkpoint: Any) -> TCM:
    """:meth:`TCM.from_state_dict` with its ValueError as a CheckpointError (one line)."""
    try:
        return TCM.from_state_dict(checkpoint)
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", update: bool = True) -> TCM:
    """Load any accepted checkpoint file as an eval-mode TCM on ``device``.

    With ``update`` the entropy tables are built if the checkpoint lacks them
    (training checkpoints), so the model can entropy-code straight away.  A
    release file's integer parameters (``models.integer_entropy``) come with
    the model (``model.integer_parameters``).
    """
    checkpoint = read_checkpoint(path)
    model = model_from_state_dict(checkpoint)
    try:
        model.integer_parameters = stored_parameters(checkpoint)
    except IntegerParameterError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if update:
        model.update(force=False)
    return model.to(device).eval()
