"""The leaderboard committed under leaderboard/: every release still verifies, and README.md is
exactly what `harness leaderboard render` makes from the committed records (nothing by hand)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.leaderboard import RecordStore

PUBLISHED = Path(__file__).resolve().parents[1] / "leaderboard"

pytestmark = pytest.mark.skipif(not (PUBLISHED / "records").is_dir(), reason="no committed leaderboard")


def _harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "leaderboard", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_every_release_verifies_against_the_committed_files():
    store = RecordStore(PUBLISHED)
    releases = sorted(p.stem for p in (PUBLISHED / "releases").glob("v*.json"))
    assert releases, "the committed leaderboard has no release"
    for name in releases:
        filed = store.release_records(name)  # raises when a file is missing or its sha256 differs
        listed = json.loads((PUBLISHED / "releases" / f"{name}.json").read_text())
        assert filed and len(filed) <= len(listed["files"])


def test_the_published_readme_is_what_render_makes(tmp_path):
    copy = tmp_path / "leaderboard"
    shutil.copytree(PUBLISHED, copy)
    (copy / "README.md").unlink()
    result = _harness("render", "--root", "leaderboard", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (copy / "README.md").read_text() == (PUBLISHED / "README.md").read_text(), (
        "leaderboard/README.md is stale or edited by hand: regenerate it with "
        "`harness leaderboard render --root leaderboard`")
    assert sorted(p.name for p in (copy / "plots").iterdir()) == sorted(p.name for p in (PUBLISHED / "plots").iterdir())


def test_show_prints_every_published_method(tmp_path):
    result = _harness("show", "--root", str(PUBLISHED), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    methods = {f.record.method.name for f in RecordStore(PUBLISHED).records()}
    for method in methods:
        assert f" {method} " in result.stdout
