"""The package's layers and the directions its imports may run (README, "Layout").

base -> data -> features -> models -> explain -> scoring -> monitoring -> faces (serving, ui, cli): a module
imports its own part and the layers beneath it, never one above. Faces may import each other where the
table below says so (the service mounts the page; the CLI starts the service), and the page never imports
the CLI. Every import counts: absolute and relative, at the top of a module, inside a function or under
`if TYPE_CHECKING:`. No two modules import each other, directly or through others.

A new module must be placed in a layer (PARTS); a failure names the module, the import and the rule.
"""

from __future__ import annotations

import ast
import graphlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# part -> the modules and packages it holds (a package holds its submodules)
PARTS: dict[str, tuple[str, ...]] = {
    "base": ("crmscore", "crmscore.errors", "crmscore.settings", "crmscore.config", "crmscore.progress",
             "crmscore.synthetic", "crmscore.files", "crmscore.compiled"),
    "data": ("crmscore.data",),
    "features": ("crmscore.features",),
    "models": ("crmscore.models",),
    "explain": ("crmscore.explain",),
    "scoring": ("crmscore.scoring",),
    "monitoring": ("crmscore.monitoring",),
    "serving": ("crmscore.serving",),
    "ui": ("crmscore.ui",),
    "cli": ("crmscore.cli", "crmscore.__main__"),
}
LAYERS = ["base", "data", "features", "models", "explain", "scoring", "monitoring", "faces"]
LAYER_OF = {"serving": "faces", "ui": "faces", "cli": "faces", **{p: p for p in LAYERS if p != "faces"}}
# imports between faces (same layer): the service mounts the page's routes; the page signs in with the
# service's API keys; the CLI starts the service and manages its keys. Nothing imports the CLI.
FACE_EDGES = {("serving", "ui"), ("ui", "serving"), ("cli", "serving"), ("cli", "ui")}
FACES = ("serving", "ui", "cli")


def allowed(src: str, dst: str) -> bool:
    """May a module of part `src` import a module of part `dst`?"""
    if src == dst:
        return True
    a, b = LAYERS.index(LAYER_OF[src]), LAYERS.index(LAYER_OF[dst])
    return b < a or (src, dst) in FACE_EDGES


def part_of(module: str) -> str | None:
    """The part holding a module: the longest listed prefix (base lists its modules one by one)."""
    best, best_len = None, -1
    for part, prefixes in PARTS.items():
        for p in prefixes:
            if p == "crmscore" and module != "crmscore":
                continue  # the root package alone; its submodules are placed one by one
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = part, len(p)
    return best


def modules(src: Path) -> dict[str, tuple[Path, bool]]:
    """Every module under src/crmscore: dotted name -> (file, is a package's __init__)."""
    out = {}
    for path in sorted((src / "crmscore").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def import_edges(src: Path) -> list[tuple[str, str, int]]:
    """(importer, imported module, line) for every import of a crmscore module, wherever it stands in the
    file. `from pkg import name` points at pkg.name when that is a module, else at pkg."""
    known = modules(src)
    edges = []
    for name, (path, is_pkg) in known.items():
        package = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
            for t in targets:
                if t == "crmscore" or t.startswith("crmscore."):
                    edges.append((name, t, node.lineno))
    return edges


def layering_problems(src: Path) -> list[str]:
    """One line per unplaced module and per import against the rules."""
    problems = [f"{m}: not in any layer; add it to PARTS in tests/test_layout.py (and the README's Layout)"
                for m in modules(src) if part_of(m) is None]
    for importer, imported, line in import_edges(src):
        a, b = part_of(importer), part_of(imported)
        if a is None or b is None:
            continue
        if not allowed(a, b):
            problems.append(f"{importer} (line {line}) imports {imported}: {a} ({LAYER_OF[a]}) may not import "
                            f"{b} ({LAYER_OF[b]})")
    return problems


def import_cycle(src: Path) -> list[str] | None:
    """A cycle of modules importing each other (first module repeated at the end), or None."""
    graph: dict[str, set[str]] = {m: set() for m in modules(src)}
    for importer, imported, _ in import_edges(src):
        if imported != importer:
            graph[importer].add(imported)
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_every_import_runs_down_the_layers():
    problems = layering_problems(SRC)
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    cycle = import_cycle(SRC)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_rules_catch_backward_imports_and_cycles(tmp_path):
    """The checks on a small package that breaks each rule once: an upward relative import inside a function,
    an upward import under TYPE_CHECKING, the page importing the CLI, a module in no layer, and a cycle."""
    files = {
        "crmscore/__init__.py": "",
        "crmscore/models/__init__.py": "",
        "crmscore/models/a.py": "def f():\n    from ..ui import page\n    from . import b\n",
        "crmscore/models/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                "    from crmscore.scoring.online import X\nimport crmscore.models.a\n",
        "crmscore/scoring/__init__.py": "", "crmscore/scoring/online.py": "from crmscore.models import a\n",
        "crmscore/ui/__init__.py": "", "crmscore/ui/page.py": "from crmscore.cli.main import run\n",
        "crmscore/cli/__init__.py": "from crmscore.ui import page\nfrom crmscore.serving import service\n",
        "crmscore/cli/main.py": "",
        "crmscore/serving/__init__.py": "", "crmscore/serving/service.py": "from crmscore.ui.page import x\n",
        "crmscore/stray.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    problems = layering_problems(tmp_path)
    assert any(p.startswith("crmscore.models.a (line 2) imports crmscore.ui.page") for p in problems), problems
    assert any(p.startswith("crmscore.models.b (line 3) imports crmscore.scoring.online") for p in problems)
    assert any(p.startswith("crmscore.ui.page (line 1) imports crmscore.cli.main") for p in problems)
    assert any(p.startswith("crmscore.stray: not in any layer") for p in problems)
    assert len(problems) == 4, problems  # scoring -> models, cli -> ui/serving, serving -> ui are allowed
    cycle = import_cycle(tmp_path)
    assert cycle is not None and set(cycle) == {"crmscore.models.a", "crmscore.models.b"}


# layers in order; importing every module of a layer and those beneath it loads nothing from above it
LOADED_ABOVE = r"""
import importlib, importlib.util, json, pkgutil, sys
layers = json.loads(sys.argv[1])
out = {}
for name, prefixes, above in layers:
    for prefix in prefixes:
        if importlib.util.find_spec(prefix) is None:
            continue  # a part with no module yet (monitoring)
        mod = importlib.import_module(prefix)
        if hasattr(mod, "__path__"):
            for info in pkgutil.walk_packages(mod.__path__, prefix + "."):
                importlib.import_module(info.name)
    out[name] = sorted(m for m in sys.modules if any(m == a or m.startswith(a + ".") for a in above))
print(json.dumps(out))
"""


def test_importing_a_layer_loads_nothing_above_it():
    """Importing crmscore.models (each of its modules) loads no module of crmscore.ui, crmscore.serving or
    crmscore.cli; and likewise for every layer below the faces, in one process (sys.modules only grows as
    layers are added in order, so what a layer pulls in shows as soon as it is imported)."""
    order = [p for p in PARTS if p not in FACES]
    layers = []
    for i, part in enumerate(order):
        prefixes = [p for p in PARTS[part] if p != "crmscore"]
        above = [p for q in order[i + 1:] + list(FACES) for p in PARTS[q]]
        layers.append((part, prefixes, above))
    proc = subprocess.run([sys.executable, "-c", LOADED_ABOVE, json.dumps(layers)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(loaded) == set(order)
    assert loaded["models"] == [], loaded["models"]
    assert all(not v for v in loaded.values()), loaded


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
