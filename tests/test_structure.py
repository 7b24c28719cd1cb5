"""The package's import structure: one-way layers along the pipeline, no cycles, no reach-ins.

Every module of ``glacgrid`` is parsed with :mod:`ast` (imports inside functions count too). A module
belongs to a *stage*: the top-level module or subpackage it sits in (``glacgrid.features.topo`` ->
``features``). Stages are ranked along the pipeline; a module may import only from its own stage or
from stages of a lower or equal rank, the stage graph has no cycle, no module imports a private
(underscore) module or name of another stage, and numpy kernel modules (``_kernels.py``) import no
xarray. docs/architecture.md explains the layers.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import glacgrid

PACKAGE = Path(glacgrid.__file__).resolve().parent

#: Stages by rank, lowest first. A new module or subpackage must be placed here.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "exceptions", "units", "metadata", "atomic", "storage", "config"),  # foundation
    ("cube",),  # the Zarr store layer (template-then-region writes, resume records) ingest writes through
    ("ingest",),
    ("grid", "observations"),
    ("glaciers",),
    ("masks", "mosaic"),
    ("downscale",),
    ("features",),
    ("domain",),  # the packed glacier-pixel domain of a region (built from tiles or rasters, rasterised back)
    ("models",),
    ("inference",),
    ("geometry",),
    ("simulate",),
    ("figures",),
    ("outputs", "validation"),
    ("pipeline",),
    ("testing", "cluster", "logs"),
    ("cli", "__main__"),
)
RANK = {stage: rank for rank, stages in enumerate(LAYERS) for stage in stages}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("glacgrid",) + path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports() -> list[tuple[str, str, str, int]]:
    """(importing module, imported module, imported name or '', line) for every import of glacgrid."""
    out = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out += [(module, a.name, "", node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, path, node)
                for a in node.names:
                    full = f"{target}.{a.name}"
                    if full in MODULES:  # a submodule imported by name
                        out.append((module, full, "", node.lineno))
                    else:
                        out.append((module, target, a.name, node.lineno))
    return out


def internal_imports():
    return [(m, t, n, line) for m, t, n, line in imports() if t == "glacgrid" or t.startswith("glacgrid.")]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_every_stage_has_a_layer():
    unknown = sorted({stage(m) for m in MODULES} - set(RANK))
    assert not unknown, f"place these modules in LAYERS (tests/test_structure.py): {unknown}"


def test_no_stage_imports_a_higher_one():
    bad = [f"{m}:{line} imports {t} ({stage(m)} rank {RANK[stage(m)]} -> {stage(t)} rank {RANK[stage(t)]})"
           for m, t, _, line in internal_imports() if RANK[stage(t)] > RANK[stage(m)]]
    assert not bad, "imports that run back up the pipeline:\n" + "\n".join(bad)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def _module_edges() -> dict[str, set[str]]:
    edges = defaultdict(set)
    for m, t, _, _ in internal_imports():
        # `from pkg import name` runs pkg/__init__: an edge to the package (the root package only
        # defines __version__ and the base exception, so edges to it cannot close a cycle)
        if t != m and t != "glacgrid":
            edges[m].add(t)
    return edges


def test_no_import_cycles_between_modules():
    assert not _cycles(_module_edges()), f"import cycles: {_cycles(_module_edges())}"


def test_no_import_cycles_between_stages():
    edges = defaultdict(set)
    for m, t, _, _ in internal_imports():
        if stage(t) != stage(m):
            edges[stage(m)].add(stage(t))
    assert not _cycles(edges), f"stage cycles: {_cycles(edges)}"


def test_no_private_names_across_stages():
    bad = []
    for m, t, name, line in internal_imports():
        if stage(t) == stage(m):
            continue
        if any(_private(p) for p in t.split(".")) or _private(name):
            bad.append(f"{m}:{line} imports {t}{'.' + name if name else ''}")
    assert not bad, "private names imported from another stage:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", sorted(m for m, p in MODULES.items() if p.name == "_kernels.py"))
def test_kernels_import_no_xarray(module):
    bad = [t for m, t, _, _ in imports() if m == module and (t == "xarray" or t.startswith("xarray."))]
    assert not bad, f"{module} is a numpy kernel module and imports {bad}"


def test_layers_cover_the_pipeline_order():
    order = ["cube", "ingest", "grid", "masks", "downscale", "features", "models", "inference", "geometry",
             "simulate", "outputs", "pipeline", "cli"]
    assert [RANK[s] for s in order] == sorted(RANK[s] for s in order)
    assert len({RANK[s] for s in order}) == len(order)


def test_the_checker_catches_a_cycle_and_a_back_arrow():
    # a test that can fail: the cycle finder and the rank rule on a known bad graph
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert not _cycles({"a": {"b"}, "b": {"c"}})
    assert RANK["features"] > RANK["masks"] > RANK["glaciers"] > RANK["grid"]
    assert stage("glacgrid.features.topo") == "features" and stage("glacgrid") == "__init__"
