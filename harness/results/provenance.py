"""Where a result came from: code version, git state, library versions, hardware."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

KEY_LIBRARIES = ("torch", "timm", "lightly", "numpy", "scipy", "scikit-image", "pydantic", "pluggy")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in KEY_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def git_state(path: Path | None = None) -> dict[str, str | bool | None]:
    """Commit and dirty flag of the checkout harness runs from; None outside a git checkout."""
    root = path or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_simd() -> str:
    """The instruction-set targets numpy dispatches to on this CPU (e.g. ``X86_V4 AVX512_ICL``).
    Two machines that differ here can round numpy's vectorised loops differently."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # a private table: absent from other numpy versions
        return "unknown"
    return " ".join(name for name in __cpu_dispatch__ if __cpu_features__.get(name)) or "baseline"


def blas_core() -> str:
    """The BLAS kernels numpy and scipy run on this CPU (e.g. ``openblas SkylakeX``): OpenBLAS
    picks them at load time from the CPU, and they set the order of a dot product's additions,
    so two machines that differ here can round dots differently (seen: scipy's
    wasserstein_distance, a dot product, one ulp apart on two AVX512 VMs whose torch and numpy
    kernels agreed). Only numpy's and scipy's own libraries count: others (the OCR's opencv
    ships an older OpenBLAS that names the same CPU ``Zen``) compute none of the metrics."""
    import numpy
    import scipy.linalg  # noqa: F401  (threadpoolctl reports the libraries loaded)
    from threadpoolctl import threadpool_info

    site = Path(numpy.__file__).resolve().parent.parent
    blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    own = [lib for lib in blas if _under_package(Path(lib["filepath"]), site, ("numpy", "scipy"))]
    cores = {f"{lib['internal_api']} {lib.get('architecture') or '?'}" for lib in own or blas}
    return ", ".join(sorted(cores)) or "unknown"


def _under_package(path: Path, site: Path, packages: tuple[str, ...]) -> bool:
    """Whether ``path`` lies in one of ``packages``' directories in ``site`` (e.g. numpy.libs/)."""
    try:
        first = path.resolve().relative_to(site).parts[0]
    except (ValueError, IndexError):
        return False
    return first.split(".")[0] in packages


# the keys of hardware() that decide a CPU result's last digits: torch's and numpy's instruction sets and
# the BLAS kernels; two machines round alike only where all three agree
ROUNDING_KEYS = ("cpu_capability", "cpu_simd", "blas_core")


def machine_kind(device: Mapping[str, Any], hardware: Mapping[str, Any]) -> str:
    """What a record's numbers were computed on, as far as rounding goes: the device, and on a CPU its
    model and the kernels torch and the BLAS dispatch to (two records of one seed on two kinds are two
    draws, not one network reproduced; :func:`hardware`)."""
    if device.get("type", "cpu") != "cpu":
        return str(device.get("name", device.get("type")))
    parts = [hardware.get("cpu_model") or hardware.get("processor") or "unknown CPU",
             *(hardware.get(k) for k in ROUNDING_KEYS)]
    return ", ".join(str(x) for x in parts if x)


def hardware() -> dict[str, str | int]:
    """The machine. ``cpu_capability`` is the vector instruction set torch dispatches to (e.g.
    AVX2, AVX512), ``cpu_simd`` numpy's (:func:`numpy_simd`), ``blas_core`` the BLAS kernels
    (:func:`blas_core`): two CPUs where any differs can round differently, so a CPU result is
    only reproducible to the last digit where all three agree
    (seen: the same denoise pretraining ended at loss 0.05127796 on one 2-core VM and 0.05127827
    on another)."""
    import os

    import torch

    return {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count() or 0,
            "system": platform.system(), "cpu_model": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_simd": numpy_simd(),
            "blas_core": blas_core()}


def command_line() -> str:
    """The `harness ...` command this process runs ("" when it is not the harness CLI, e.g. a
    submitit job, whose request carries the command of the sweep that sent it instead)."""
    return shlex.join(["harness", *sys.argv[1:]]) if sys.argv and "harness" in sys.argv[0] else ""
