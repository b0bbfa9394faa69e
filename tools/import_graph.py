"""The project's import graph: cycles between modules and between top-level packages.

    python tools/import_graph.py            # prints the package graph; exit 1 on any cycle
    python tools/import_graph.py --modules  # every module's project imports too

Every ``import`` and ``from … import`` counts, at module level or inside a
function (a function-level import is still a dependency, only a later one).
Only the project's own modules are nodes: the standard library and installed
packages are left out.  A cycle is a strongly connected component of more than
one node.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".venv", ".git", "tests", "conftest.py", "runs", "demo_out", "out", "__pycache__"}


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file outside tests and virtual environments."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIP & set(rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (the longest known prefix of each imported name)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def add(dotted: str) -> None:
        parts = dotted.split(".")
        for k in range(len(parts), 0, -1):
            candidate = ".".join(parts[:k])
            if candidate in modules:
                if candidate != name:
                    found.add(candidate)
                return

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                add(f"{prefix}.{alias.name}" if prefix else alias.name)
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def package_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """Top-level package (or top-level module) -> those it imports, itself left out."""
    top = defaultdict(set)
    for name, deps in modules.items():
        here = name.split(".")[0]
        top[here] |= {d.split(".")[0] for d in deps} - {here}
    return dict(top)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", action="store_true", help="print every module's project imports too")
    args = parser.parse_args(argv)
    modules = graph()
    packages = package_graph(modules)
    for name in sorted(packages):
        print(f"{name:12} -> {', '.join(sorted(packages[name])) or '-'}")
    if args.modules:
        print()
        for name in sorted(modules):
            print(f"{name:32} -> {', '.join(sorted(modules[name])) or '-'}")
    module_cycles, package_cycles = cycles(modules), cycles(packages)
    for kind, found in (("module", module_cycles), ("package", package_cycles)):
        for c in found:
            print(f"{kind} cycle: {' <-> '.join(c)}")
    print(f"{len(modules)} modules, {len(packages)} top-level packages and modules: "
          f"{len(module_cycles)} module cycles, {len(package_cycles)} package cycles")
    return 1 if module_cycles or package_cycles else 0


if __name__ == "__main__":
    sys.exit(main())
