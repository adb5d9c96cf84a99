"""The GPU machine's Python, imitated here: only its packages can be imported.

The lent GPU machine has torch, torchvision, numpy, pandas, matplotlib, seaborn, tqdm, pillow,
scipy, scikit-learn and pytest (with whatever those need), and nothing can be installed there.
:func:`restricted_env` gives a subprocess an import hook (a ``sitecustomize`` module on its
``PYTHONPATH``, so every Python it starts has it too) that hides every module this venv has and
that machine lacks (submitit, papermill, nbval, jupyter-book, selenium and the rest), so that
importing one fails as it would there.
"""
from __future__ import annotations

import json
import os
import re
from importlib import metadata
from pathlib import Path

GPU_MACHINE_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "matplotlib", "seaborn", "tqdm", "pillow",
                        "scipy", "scikit-learn", "pytest")

HOOK = '''\
import sys
from importlib.machinery import PathFinder

REFUSED = frozenset({refused})


class _GPUMachineOnly:
    """sys.meta_path's PathFinder, blind to what the GPU machine lacks: importing it fails as
    it fails there, and importlib.util.find_spec answers None as it does there."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        return None if name.partition(".")[0] in REFUSED else PathFinder.find_spec(name, path, target)

    @staticmethod
    def invalidate_caches():
        PathFinder.invalidate_caches()


sys.meta_path[:] = [_GPUMachineOnly if finder is PathFinder else finder for finder in sys.meta_path]
'''


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(packages=GPU_MACHINE_PACKAGES) -> set[str]:
    """The distributions ``packages`` need, recursively (those installed here), by normalised name."""
    from packaging.requirements import Requirement

    seen, todo = set(), [_normal(p) for p in packages]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_normal(req.name))
    return seen


def refused_modules() -> set[str]:
    """Top-level modules installed here whose distributions are not in the GPU machine's closure."""
    allowed = closure()
    return {module for module, dists in metadata.packages_distributions().items()
            if not any(_normal(d) in allowed for d in dists) and module != "gdwlib"}


def restricted_env(directory: Path, root: Path) -> dict[str, str]:
    """The environment of a subprocess that can import only what the GPU machine has (and the
    project, from ``root``)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(HOOK.format(refused=json.dumps(sorted(refused_modules()))))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(directory), str(root)]),
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
