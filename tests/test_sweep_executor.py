"""`harness sweep --executor local`: the grid runs as submitit jobs, one per (method, seed),
through the same road a SLURM sweep takes (issue: nothing lost, "SLURM through submitit")."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.pipeline import RunRequest
from harness.sweep import SweepJob, grid_cells, job_groups


def test_a_two_cell_grid_runs_as_local_submitit_jobs_and_a_rerun_skips_it(tmp_path, monkeypatch):
    # the local executor starts both jobs at once: one thread each, or two torch processes on 2 cores stall
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = ["sweep", "--methods", "none,denoise", "--budgets", "2", "--seeds", "0", "--profile", "smoke",
            "--quiet", "--threads", "1", "--out", str(tmp_path), "--executor", "local", "--time-limit", "10m"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("submitted job") == 2
    records = sorted(tmp_path.glob("*/*/record.json"))
    assert [p.parent.name for p in records] == ["denoise-2-finetune-seed0", "none-2-finetune-seed0"]
    assert all(json.loads(p.read_text())["budget"] == "2" for p in records)
    assert list((tmp_path / "submitit").glob("*_log.out"))  # each job's own log
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "done before" in again.output and "ok " not in again.output


def test_max_jobs_starts_the_next_job_only_when_one_has_ended(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = ["sweep", "--methods", "none", "--budgets", "2", "--seeds", "0,1", "--profile", "smoke", "--quiet",
            "--threads", "1", "--out", str(tmp_path), "--executor", "local", "--time-limit", "10m", "--max-jobs", "1"]
    monkeypatch.setattr(sys, "argv", ["/venv/bin/harness", *args])  # as a shell would start it
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("submitted job") == 2
    first, second = (json.loads((tmp_path / "synthetic-sem" / f"none-2-finetune-seed{s}" / "record.json").read_text())
                     for s in (0, 1))
    ended = datetime.fromisoformat(first["created"])
    # the second run began (its record's time less its stages' wall time) after the first one's record
    began = datetime.fromisoformat(second["created"]) - timedelta(seconds=sum(second["timings_s"].values()))
    assert began >= ended - timedelta(seconds=1), (first["created"], second["created"], second["timings_s"])
    # a job runs under submitit's argv: its record names the sweep that sent it
    assert first["command"] == second["command"] == "harness " + " ".join(args)


@pytest.mark.parametrize("extra", [["--executor", "slurm", "--partition", "x"], ["--executor", "local", "--no-wait"],
                                   []])
def test_max_jobs_is_refused_where_it_cannot_hold(extra, tmp_path):
    result = CliRunner().invoke(main, ["sweep", "--methods", "none", "--out", str(tmp_path), "--max-jobs", "2",
                                       *extra])
    assert result.exit_code == 2 and "--max-jobs" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.glob("*/*/record.json"))


def test_jobs_keep_the_cells_of_one_pretraining_together():
    cells = grid_cells(["none", "fcmae"], [0, 1], ["1%", "10%"])
    requests = [RunRequest(method=m, budget=b, seed=s) for m, s, b in cells]
    groups = job_groups(requests)
    assert len(groups) == 4
    assert all(len({(r.method, r.seed) for r in g}) == 1 and [r.budget for r in g] == ["1%", "10%"] for g in groups)
    # jobs start in the grid's order, not sorted by method name: seed 0's pair before seed 1's
    assert [(g[0].method, g[0].seed) for g in groups] == [("none", 0), ("fcmae", 0), ("none", 1), ("fcmae", 1)]


def test_a_sweep_runs_seed_by_seed_so_a_stopped_one_leaves_whole_pairs():
    cells = grid_cells(["none", "simclr", "denoise"], [6, 7], ["10%", "100%"])
    assert cells[:6] == [("none", 6, "10%"), ("none", 6, "100%"), ("simclr", 6, "10%"), ("simclr", 6, "100%"),
                         ("denoise", 6, "10%"), ("denoise", 6, "100%")]
    assert len(cells) == 12 and len(set(cells)) == 12
    assert {s for _, s, _ in cells[:6]} == {6}


def test_executor_options_without_an_executor_are_refused():
    result = CliRunner().invoke(main, ["sweep", "--methods", "none", "--partition", "gpu"])
    assert result.exit_code == 2 and "need --executor" in result.output
    result = CliRunner().invoke(main, ["sweep", "--methods", "none", "--executor", "local", "--partition", "gpu"])
    assert result.exit_code == 2 and "--executor slurm" in result.output


def _pretraining_step_reached(job) -> int:
    """The last pretraining step the job's progress bar has printed to its stderr log (0 before)."""
    path = Path(job.paths.stderr)
    text = path.read_text(errors="replace") if path.is_file() else ""
    steps = re.findall(r"pretrain denoise:[^\r\n]*?\| *(\d+)/\d+", text)
    return int(steps[-1]) if steps else 0


def test_a_preempted_job_saves_its_stage_requeues_and_resumes_with_the_same_numbers(tmp_path, monkeypatch):
    """Submitit's preemption signal (USR2) reaches the pretraining stage first: it saves at the end of
    its step (checkpoints are otherwise off here), the job hands the signal on to submitit, which
    requeues it; the requeued job resumes that step and files the numbers of a run never stopped."""
    import submitit

    cell = ["--method", "denoise", "--budget", "2", "--seed", "3", "--profile", "smoke", "--pretrain-steps", "40",
            "--threads", "1", "--checkpoint-every", "off"]
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache-whole"), "OMP_NUM_THREADS": "1"}
    whole = subprocess.run([sys.executable, "-m", "harness", "run", *cell, "--quiet", "--out", str(tmp_path / "whole")],
                           env=env, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache-job"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    request = RunRequest(method="denoise", budget="2", seed=3, profile="smoke", pretrain_steps=40, threads=1,
                         checkpoint_every="off")
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="local")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(SweepJob(), [request.model_dump(mode="json")], str(tmp_path / "sweep"), False)
    deadline = time.monotonic() + 300
    while _pretraining_step_reached(job) < 10:
        assert job.state not in ("FINISHED", "FAILED") and time.monotonic() < deadline, job.stderr()
        time.sleep(0.2)
    # what SLURM's --signal does before a preemption or the time limit: the signal to the job's task
    # (submitit's local controller, the parent, would relay it only at its own time limit)
    controller = job._process.pid
    tasks = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    assert len(tasks) == 1, tasks
    os.kill(int(tasks[0]), signal.SIGUSR2)
    rows = job.result()
    assert [r["status"] for r in rows] == ["ok"]
    log = job.stdout() or ""
    stopped = re.search(r"stopped by signal SIGUSR2 after step (\d+)", log)
    assert stopped and "handing the preemption on to submitit" in log, log[-3000:]
    assert f"resuming from step {stopped.group(1)} of 40" in log, log[-3000:]
    assert 10 <= int(stopped.group(1)) < 40
    resumed = json.loads(next((tmp_path / "sweep").glob("*/*/record.json")).read_text())
    expected = json.loads((tmp_path / "whole" / "record.json").read_text())
    for key in ("metrics", "selection", "postprocess", "settings"):
        assert resumed[key] == expected[key], key
    assert resumed["pretrain"]["final_loss"] == expected["pretrain"]["final_loss"]
