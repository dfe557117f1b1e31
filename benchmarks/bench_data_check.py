"""``harness data check`` on a real folder: this tree against the commit before the check was
spread over processes, side by side in one run, both from cold caches.

Run on an otherwise idle machine, on the full EMPS folder (fetched, not committed; README,
"Real data"):

    HARNESS_BENCH_FOLDER=/path/to/emps .venv/bin/pytest benchmarks/bench_data_check.py --benchmark-enable -q -s

Without the variable it uses the 27 vendored EMPS images (too few for the worker processes to
pay: a check of 27 images is not what the target is about). The "before" side is the code of
:data:`BEFORE` in a temporary git worktree; each side runs ``harness data check --json`` in a
fresh process with its own empty ``HARNESS_CACHE_DIR`` (no remembered scale-bar readings, no
folder digests), and the two JSON reports must be identical. Target (issue: real folders, item
6): at least 3x faster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The last commit whose check ran in one process (main before the change).
BEFORE = os.environ.get("HARNESS_BENCH_BEFORE", "3298e00")
FOLDER = Path(os.environ.get("HARNESS_BENCH_FOLDER", ROOT / "tests" / "data" / "emps-real"))
TARGET = 3.0


def _check(source: Path, folder: Path, work: Path, name: str) -> tuple[float, dict]:
    """Seconds of one cold ``harness data check`` with the harness package at ``source``."""
    env = {**os.environ, "HARNESS_CACHE_DIR": str(work / f"cache-{name}"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")])}
    report = work / f"{name}.json"
    code = ("import sys; from harness.cli import main; "
            f"sys.argv = ['harness', 'data', 'check', {str(folder)!r}, '--json', {str(report)!r}]; main()")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=work, capture_output=True, text=True,
                          timeout=3600)
    seconds = time.perf_counter() - start
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return seconds, json.loads(report.read_text())


@pytest.mark.benchmark(group="data-check")
def test_data_check_before_and_after(benchmark):
    if not (ROOT / ".git").exists():
        pytest.skip("needs the git history (the 'before' side is a commit)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        before = work / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), BEFORE],
                       check=True, capture_output=True)
        try:
            old_s, old = _check(before, FOLDER, work, "before")
            new_s, new = benchmark.pedantic(lambda: _check(ROOT, FOLDER, work, "after"), rounds=1, iterations=1)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                           capture_output=True)
            shutil.rmtree(before, ignore_errors=True)
    images = len(new["images"])
    print(f"\ndata check of {FOLDER} ({images} images), cold caches, {os.cpu_count()} cores:")
    print(f"  before ({BEFORE}): {old_s:7.1f} s  {images / old_s:6.1f} img/s")
    print(f"  after  (this tree): {new_s:7.1f} s  {images / new_s:6.1f} img/s   speed-up {old_s / new_s:.2f}x "
          f"(target >= {TARGET}x)")
    assert new == old, "the reports differ"
