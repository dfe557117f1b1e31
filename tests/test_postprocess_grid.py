"""scripts/postprocess_grid.py: its task row is the run's own post-processing (so it reproduces the
record), ``--task`` reads a network under another version that shares its maps, and it refuses one
that does not."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main

EMPS = Path(__file__).parent / "data" / "emps-mini"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    result = CliRunner().invoke(main, ["run", "--method", "none", "--budget", "100%", "--profile", "smoke",
                                       "--dataset", str(EMPS), "--task-version", "distmap-v2", "--quiet",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _grid(script, *args: str):
    return CliRunner().invoke(script("postprocess_grid").main, [*args, "--dataset", str(EMPS)])


def _test_count_error(line: str) -> float:
    match = re.search(r"; test mean count error ([0-9.]+)", line)
    assert match, line
    return float(match.group(1))


def test_the_task_row_reproduces_the_runs_record(script, run_dir):
    result = _grid(script, "--run", str(run_dir))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "task grid (distmap-v2)", "wider grid", "wider grid, h-maxima seeds"]
    record = json.loads((run_dir / "record.json").read_text())
    chosen = ast.literal_eval(re.search(r"chosen on validation (\{.*?\});", lines[0]).group(1))
    assert chosen == record["postprocess"]["params"]
    assert _test_count_error(lines[0]) == pytest.approx(record["headline"]["value"], abs=5e-4)


def test_another_version_with_the_same_maps_reads_the_network_its_way(script, run_dir):
    result = _grid(script, "--run", str(run_dir), "--task", "distmap-v3", "--task-only")
    assert result.exit_code == 0, result.output
    [first] = result.output.splitlines()
    assert first.startswith("task grid (distmap-v3): chosen on validation {")
    assert "'min_share'" in first and "'seed_dynamic'" in first


@pytest.mark.parametrize(("task", "reason"), [("3class-v1", "no distance-map grid"),
                                              ("distmap-v9", "unknown task version")])
def test_a_task_that_cannot_read_the_network_is_refused_in_one_line(script, run_dir, task, reason):
    result = _grid(script, "--run", str(run_dir), "--task", task)
    assert result.exit_code == 2 and reason in result.output
    assert "Traceback" not in result.output


def test_a_folder_read_otherwise_than_the_run_read_it_is_refused_in_one_line(script, run_dir):
    """Read with other options (binary masks split 4- rather than 8-connected), the same folder is another
    truth: the script once scored the run's network against it without a word."""
    result = _grid(script, "--run", str(run_dir), "--connectivity", "4")
    assert result.exit_code == 2 and "not the folder the run read" in result.output
    assert "Traceback" not in result.output
