"""`harness sweep --executor local`: the grid runs as submitit jobs, one per (method, seed),
through the same road a SLURM sweep takes (issue: nothing lost, "SLURM through submitit")."""

from __future__ import annotations

import json

from click.testing import CliRunner

from harness.cli import main
from harness.pipeline import RunRequest
from harness.sweep import job_groups


def test_a_two_cell_grid_runs_as_local_submitit_jobs_and_a_rerun_skips_it(tmp_path):
    args = ["sweep", "--methods", "none,denoise", "--budgets", "2", "--seeds", "0", "--profile", "smoke",
            "--quiet", "--out", str(tmp_path), "--executor", "local", "--time-limit", "10m"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("submitted job") == 2
    records = sorted(tmp_path.glob("*/*/record.json"))
    assert [p.parent.name for p in records] == ["denoise-2-finetune-seed0", "none-2-finetune-seed0"]
    assert all(json.loads(p.read_text())["budget"] == "2" for p in records)
    assert list((tmp_path / "submitit").glob("*_log.out"))  # each job's own log
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "done before" in again.output and "ok " not in again.output


def test_jobs_keep_the_cells_of_one_pretraining_together():
    requests = [RunRequest(method=m, budget=b, seed=s) for m in ("none", "fcmae") for s in (0, 1)
                for b in ("1%", "10%")]
    groups = job_groups(requests)
    assert len(groups) == 4
    assert all(len({(r.method, r.seed) for r in g}) == 1 and [r.budget for r in g] == ["1%", "10%"] for g in groups)


def test_executor_options_without_an_executor_are_refused():
    result = CliRunner().invoke(main, ["sweep", "--methods", "none", "--partition", "gpu"])
    assert result.exit_code == 2 and "need --executor" in result.output
    result = CliRunner().invoke(main, ["sweep", "--methods", "none", "--executor", "local", "--partition", "gpu"])
    assert result.exit_code == 2 and "--executor slurm" in result.output
