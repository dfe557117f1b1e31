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


@pytest.fixture(scope="session")
def resampled_emps_run(tmp_path_factory) -> Path:
    """``none`` at 100% on the vendored EMPS subset (smoke), as if the network's view held 20 px particles
    at most: the run resamples (factor < 1) and each image gets the second look. Shared by the tests of
    the working resolution and of scripts that read such a run."""
    import harness.context as context
    import harness.pipeline as pipeline

    original = context.settings_for

    def small_view(profile: str, **overrides):
        return original(profile, **overrides).model_copy(update={"scale_max_diameter_px": 20.0,
                                                                 "scale_target_diameter_px": 16.0})

    out = tmp_path_factory.mktemp("resampled-emps") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(context, "settings_for", small_view)
        pipeline.run_one(pipeline.RunRequest(method="none", budget="100%", profile="smoke",
                                             dataset=str(Path(__file__).parent / "data" / "emps-mini"),
                                             progress=False, out=out), log=lambda _m: None)
    return out
