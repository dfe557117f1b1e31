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
    # its own cache folder: the suite never writes into the checkout
    result = subprocess.run([_tool("mypy"), "--cache-dir", str(tmp_path / "mypy-cache")], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_declares_its_types():
    assert (ROOT / "harness" / "py.typed").is_file()  # PEP 561: type checkers read harness's hints
