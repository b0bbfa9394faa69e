"""The authors' TCM, from a checkout of their repository, as a speed yardstick: the same weights run by their code.

Speed claims against "the authors' code" mean nothing unless both run in one
process on one machine.  Nothing of their code ships here: the user points
``bench.py --authors`` at a clone of https://github.com/jmliu206/LIC_TCM and
its ``models/tcm.py`` is loaded from there under a private module name (their
package is also called ``models``).  The model is built with the shape of the
one measured, takes its weights (the published entry names are theirs) and
its coding tables, and its own ``compress`` and ``decompress`` are timed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn as nn

from utils.cli import ToolError

#: The file of their checkout that defines TCM.
MODEL_FILE = Path("models") / "tcm.py"
#: The private name their module is loaded under.
MODULE_NAME = "_authors_tcm"
_loaded: dict[Path, object] = {}
#: Buffers whose sizes depend on the tables: their model starts them empty, and ``update`` fills them.
TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


class AuthorsCodeError(ToolError):
    """A checkout that is not the authors' repository, or their code that cannot run here: one line."""


def load_module(checkout: str | Path):
    """Their ``models/tcm.py`` as a module (each file loaded once per process)."""
    path = (Path(checkout) / MODEL_FILE).resolve()
    if not path.is_file():
        raise AuthorsCodeError(f"--authors {checkout}: no {MODEL_FILE} there (give a clone of jmliu206/LIC_TCM)")
    if path in _loaded:
        return _loaded[path]
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as e:
        raise AuthorsCodeError(f"the authors' code needs {e.name!r}, which is not installed "
                               f"(pip install {e.name})") from None
    except Exception as e:  # their file, not ours: whatever it raises is reported in one line
        raise AuthorsCodeError(f"{path}: {type(e).__name__}: {e}") from None
    if not isinstance(getattr(module, "TCM", None), type):
        raise AuthorsCodeError(f"{path} defines no class TCM")
    _loaded[path] = module
    return module


def authors_model(checkout: str | Path, net: nn.Module) -> nn.Module:
    """Their TCM with ``net``'s shape, weights and coding tables, in eval mode on ``net``'s device."""
    module = load_module(checkout)
    # Ordinary tensors whatever mode the caller is in (the FLOP counter's module tracker needs them).
    with torch.inference_mode(False), torch.no_grad():
        return _build(module, net)


def _build(module, net: nn.Module) -> nn.Module:
    c = net.model_config
    try:
        theirs = module.TCM(config=list(c.config), head_dim=list(c.head_dim), drop_path_rate=0.0, N=c.N, M=c.M,
                            num_slices=c.num_slices, max_support_slices=c.max_support_slices)
        # The tables are left out (their model starts them empty and update() computes them as ours did);
        # nn.Module's load_state_dict, since theirs takes no ``strict``.
        weights = {k: v for k, v in net.state_dict().items() if not k.endswith(TABLE_BUFFERS)}
        missing, unexpected = nn.Module.load_state_dict(theirs, weights, strict=False)
    except Exception as e:
        raise AuthorsCodeError(f"the authors' TCM does not take this model's shape or weights: {e}") from None
    missing = [k for k in missing if not k.endswith(TABLE_BUFFERS)]
    if missing or unexpected:
        raise AuthorsCodeError(f"the authors' TCM and this model differ: missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}")
    theirs.update(force=True)
    return theirs.to(next(net.parameters()).device).eval()

