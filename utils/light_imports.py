"""Libraries imported by the parts the project uses, not by their heavy package ``__init__``.

``import compressai.entropy_models`` runs ``compressai/__init__.py`` first,
which imports every part of CompressAI: its datasets import torch_geometric,
which imports ``torch._dynamo``; its registry imports torchvision; its entropy
models import ``scipy.stats`` (used only to build Gaussian tables, which the
project installs from a stored copy).  ``timm``'s ``__init__`` imports all its
models and torchvision.  Together these cost seconds and hundreds of MB in
every tool, for a few classes.

:func:`light_imports` puts a :class:`DeferredModule` in ``sys.modules`` for each
package of :data:`DEFERRED`: a package whose own code has not run yet.

- Its submodules import as usual (``from compressai.entropy_models import
  EntropyBottleneck`` runs ``compressai/entropy_models/__init__.py`` but not
  ``compressai/__init__.py``).
- A name its ``__init__`` takes from one submodule (``from .base import
  LatentCodec``) comes from that submodule alone.
- Any other name (``compressai.get_entropy_coder``, ``scipy.stats.norm``) runs
  the package's own code first, in place; the subpackages that code imports by
  name (``from compressai import datasets, zoo``) are deferred in turn, so they
  cost nothing until used.

So everything of these libraries stays reachable as documented, and a part is
paid for when it is used.  A process that imported a library before (a user's
script) keeps it as it is.  ``python -m compressai.utils.plot`` and other
programs started on their own never see any of this.  Every module of the
project that imports CompressAI or timm comes after a call (the packages'
``__init__``, ``tests/conftest.py``); tests/utils/test_light_imports.py checks it.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import sys
import threading
import types
import warnings
from typing import Any, Callable

#: The packages whose own code waits until a name of theirs is used: (name, defer its subpackages when it runs).
DEFERRED: tuple[tuple[str, bool], ...] = (
    ("compressai", True),
    ("compressai.models", True),
    ("compressai.latent_codecs", True),
    ("compressai.losses", True),
    ("compressai.registry", True),
    ("timm", True),
    ("timm.layers", True),
    ("scipy", False),
    ("scipy.stats", False),
)

_lock = threading.RLock()


class DeferredModule(types.ModuleType):
    """A package in ``sys.modules`` whose own code runs when a name other than a submodule's is used.

    It has the package's ``__spec__``, ``__path__`` and ``__file__``, so that its
    submodules import as usual.  Once its code has run it is an ordinary module.
    """

    def __init__(self, spec: importlib.machinery.ModuleSpec, defer_subpackages: bool):
        super().__init__(spec.name)
        self.__spec__ = spec
        self.__loader__ = spec.loader
        self.__file__ = spec.origin
        self.__package__ = spec.name
        self.__path__ = list(spec.submodule_search_locations or [])
        self._deferred_state = {"running": False, "subpackages": defer_subpackages, "reexports": None}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__") and name not in ("__all__", "__version__"):
            raise AttributeError(name)  # a probe for an optional dunder does not load a library
        with _lock:
            if self.__class__ is not DeferredModule:  # run meanwhile, in another thread
                return getattr(self, name)
            if self.__dict__["_deferred_state"]["running"]:  # its own code asks for a name it has not defined yet
                raise AttributeError(f"partially initialised module {self.__name__!r} has no attribute {name!r}")
            source = self._reexports().get(name)
            if source is not None:
                value = getattr(importlib.import_module(f"{self.__name__}.{source[0]}"), source[1])
                setattr(self, name, value)
                return value
            self._run()
        return getattr(self, name)

    def _reexports(self) -> dict[str, tuple[str, str]]:
        """name -> (submodule, name there), for the ``from .submodule import name`` lines of the package's code."""
        state = self.__dict__["_deferred_state"]
        if state["reexports"] is None:
            found: dict[str, tuple[str, str]] = {}
            source = self.__spec__.loader.get_source(self.__name__) or ""
            for node in ast.parse(source).body:
                if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                    for alias in node.names:
                        if alias.name != "*":
                            found[alias.asname or alias.name] = (node.module, alias.name)
            state["reexports"] = found
        return state["reexports"]

    def _run(self) -> None:
        """Run the package's own code in place; it is an ordinary module afterwards."""
        state = self.__dict__["_deferred_state"]
        if state["subpackages"]:
            for info in pkgutil.iter_modules(self.__path__):
                if info.ispkg:
                    defer(f"{self.__name__}.{info.name}", True)
        state["running"] = True
        try:
            self.__spec__.loader.exec_module(self)
        finally:
            state["running"] = False
        del self.__dict__["_deferred_state"]
        self.__class__ = types.ModuleType


def defer(name: str, defer_subpackages: bool = True) -> types.ModuleType | None:
    """Put a :class:`DeferredModule` for package ``name`` in ``sys.modules``; None where it cannot be.

    A module already imported stays as it is (and is returned); so does one
    that is not a package of Python source, or that is not installed.
    """
    with _lock:
        if name in sys.modules:
            return sys.modules[name]
        try:
            spec = importlib.util.find_spec(name)  # imports (or finds deferred) the parent package only
        except (ImportError, ValueError):
            return None
        if (spec is None or spec.submodule_search_locations is None or spec.loader is None
                or not hasattr(spec.loader, "get_source") or not str(spec.origin).endswith(".py")):
            return None
        module = DeferredModule(spec, defer_subpackages)
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
        return module


def quiet_compressai_warnings() -> None:
    """Hide the FutureWarning current torch gives for CompressAI's ``torch.jit.script`` helpers.

    CompressAI scripts them at import time and on first use, so every run of
    every tool would print it (pytest.ini filters it for the tests).
    """
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)


def light_imports() -> None:
    """Call before the first import of CompressAI or timm (cheap, and nothing the second time)."""
    quiet_compressai_warnings()
    for name, subpackages in DEFERRED:
        defer(name, subpackages)


class _PackageKeepingNames(types.ModuleType):
    """A package whose own names are not replaced by submodules of the same name when those are imported."""

    _kept: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._kept and isinstance(value, types.ModuleType) and name in vars(self):
            return  # the import system binds a submodule to its parent: the package's own name stays
        super().__setattr__(name, value)


def lazy_exports(package: str, names: dict[str, str], keep: tuple[str, ...] = ()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package of the project whose names load from their submodules on first use.

    ``names`` maps each name to the submodule that defines it (PEP 562): ``from
    models.config import TCMConfig`` then runs ``models/__init__.py`` without
    importing the model, and ``from models import TCM`` imports ``models.tcm``
    when it is asked for.  ``keep`` are names the package defines that are also
    submodules' names (``models.tcm``, the preset function, and ``models/tcm.py``):
    importing the submodule later does not replace them, as it would not have
    done had the submodule been imported before the name was defined.
    """
    module = sys.modules[package]
    if keep:
        module.__class__ = type(f"{package}_package", (_PackageKeepingNames,), {"_kept": frozenset(keep)})

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(names))

    return __getattr__, __dir__
