"""Test-wide settings: an isolated cache shared by the session, no hub downloads."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

from harness.testing import single_thread


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Generated datasets and pretrained encoders go to a session temp folder, shared by tests."""
    root = tmp_path_factory.mktemp("harness-cache")
    old = os.environ.get("HARNESS_CACHE_DIR")
    os.environ["HARNESS_CACHE_DIR"] = str(root)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield root
    if old is None:
        os.environ.pop("HARNESS_CACHE_DIR", None)
    else:
        os.environ["HARNESS_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny-model tests (``pytestmark = pytest.mark.usefixtures
    ("one_thread")``): on 2 shared cores a second thread waits on busy cores, ~50x slower."""
    with single_thread():
        yield


@pytest.fixture(scope="session")
def script():
    """``script(name)``: the file scripts/<name>.py (not a package) imported as a module, so a test
    can call its functions."""
    folder = Path(__file__).resolve().parents[1] / "scripts"

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
