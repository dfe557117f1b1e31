"""The habits the code claims are enforced: ruff and mypy (both configured in pyproject.toml)
pass, so an unused import, an unsorted block, a stale `noqa`, a call that does not match its
signature or an unused `type: ignore` fails the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(found).exists():
        pytest.skip(f"{name} is not installed (it comes with the dev extra: pip install -e '.[dev]')")
    return found


def test_ruff_passes_on_the_whole_tree():
    result = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_passes_on_harness(tmp_path):
    # its own cache folder: the suite never writes into the checkout. Started from a copy of the checkout's
    # cache where one exists (CI runs mypy first): mypy re-checks every module whose source changed and
    # their dependents, so the verdict is a fresh run's, in ~1 s instead of ~25 s spent re-reading torch
    cache = tmp_path / "mypy-cache"
    if (ROOT / ".mypy_cache").is_dir():
        shutil.copytree(ROOT / ".mypy_cache", cache)
    result = subprocess.run([_tool("mypy"), "--cache-dir", str(cache)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_declares_its_types():
    assert (ROOT / "harness" / "py.typed").is_file()  # PEP 561: type checkers read harness's hints


# The layers, bottom to top (README, "Layout"); a module may import only from its own layer or below.
ORCHESTRATION = ("harness.context", "harness.pipeline", "harness.sweep", "harness.reproduce", "harness.predict",
                 "harness.classify", "harness.cli")


def _imports(path: Path) -> set[str]:
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("package", ["data", "metrics", "models", "task", "training", "evaluation", "results"])
def test_no_layer_imports_the_orchestration_above_it(package):
    """Results, and every layer under them, never reach up into the pipeline, sweeps, reproduction
    or the CLI (lazy imports inside functions included): orchestration has one home."""
    upward = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "harness" / package).rglob("*.py"))
        for module in _imports(path)
        if any(module == top or module.startswith(top + ".") for top in ORCHESTRATION)
    }
    assert not upward, sorted(upward)
