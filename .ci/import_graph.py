"""Count import circles and layer-violating ("back-up") imports in the t2ibench package.

Layers come from DESIGN.md, as pyproject.toml's import-linter contract lists them (top to bottom); an
import may only go down. `lint-imports` enforces the rule; this script counts, for before/after reports. Run:
    python3 .ci/import_graph.py [--list]
Counts every import statement in the source, including those inside functions (grimp sees them all).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import grimp
import tomllib

ROOT = Path(__file__).resolve().parent.parent


def read_layers() -> list[list[str]]:
    """The layers contract of pyproject.toml ([tool.importlinter]), top to bottom: one source of truth.
    Siblings of one layer ("a | b" or "a : b") are not counted as back-up imports of each other here."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [[name.strip() for name in re.split(r"[|:]", layer)] for layer in contract["layers"]]


LAYERS = read_layers()


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "t2ibench" or len(parts) == 1:
        return None
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i
    return None


def top(m: str) -> str:
    return ".".join(m.split(".")[:2])


def graph_file(module: str) -> str | None:
    spec = importlib.util.find_spec(module)
    return spec.origin if spec and spec.origin and spec.origin.endswith(".py") else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--list", action="store_true", help="print each circle and back-up import")
    args = parser.parse_args()
    graph = grimp.build_graph("t2ibench", cache_dir=None)
    modules = sorted(graph.modules)
    # Circles: strongly connected components (size > 1) of the module graph.
    index, low, stack, on_stack, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for m in modules:
        if m not in index:
            visit(m)
    # Package __init__ re-exports make a package and its own submodules import each other; that is
    # not a design circle, so count circles between modules that are not parent/child of each other.
    circles = []
    for comp in sccs:
        pairs = [(a, b) for a in comp for b in graph.find_modules_directly_imported_by(a)
                 if b in comp and not (b.startswith(a + ".") or a.startswith(b + "."))]
        if pairs:
            circles.append(comp)
    # The same at package level (t2ibench.metrics.* as one node): metrics <-> prompts is a circle
    # between packages even when no single module pair closes it.
    pkg_edges = {}
    for a in modules:
        for b in graph.find_modules_directly_imported_by(a):
            if b.startswith("t2ibench.") and top(a) != top(b):
                pkg_edges.setdefault(top(a), set()).add(top(b))
    pkg_circles = sorted({tuple(sorted((a, b))) for a, bs in pkg_edges.items() for b in bs
                          if a in pkg_edges.get(b, ())})
    # Imports by name in a string ("t2ibench.x.y:Class" registries, importlib.import_module) that grimp
    # cannot see: a quoted module path of a higher layer. Those inside a `moved_names(...)` call are the
    # deprecated old names kept for one release, counted apart.
    by_string, aliases = [], []
    for m in modules:
        path = graph_file(m)
        if layer_of(m) is None or not path:
            continue
        text = open(path, encoding="utf-8").read()
        shims = " ".join(re.findall(r"moved_names\(.*?\}\)", text, flags=re.S))
        for target in sorted(set(re.findall(r"[\"'](t2ibench(?:\.\w+)+)[:\"']", text))):
            lt = layer_of(target)
            if lt is not None and lt < layer_of(m) and top(target) != top(m):
                (aliases if target in shims else by_string).append((m, target))
    unknown, upward = set(), list(by_string)
    for importer in modules:
        li = layer_of(importer)
        for imported in graph.find_modules_directly_imported_by(importer):
            lj = layer_of(imported)
            if imported.startswith("t2ibench.") and lj is None:
                unknown.add(imported.split(".")[1])
            if li is not None and lj is not None and lj < li:
                upward.append((importer, imported))
    print(f"modules: {len(modules)}  import circles: {len(circles)} (between packages: {len(pkg_circles)})"
          f"  back-up imports: {len(upward)} (of which by name in a string: {len(by_string)})"
          f"  deprecated aliases by name: {len(aliases)}")
    if unknown:
        print(f"modules in no layer: {sorted(unknown)}")
    if args.list:
        for comp in circles:
            print("circle:", " <-> ".join(comp))
        for a, b in pkg_circles:
            print(f"package circle: {a} <-> {b}")
        for a, b in upward:
            print(f"back-up: {a} -> {b}")
        for a, b in aliases:
            print(f"deprecated alias: {a} -> {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
