"""Pretraining under ``torchrun`` (DDP on CPU with gloo): two real processes on this machine.

What must hold before the loop scales past one process: ranks stay in step (every parameter of
every method identical on all ranks after training, two-optimiser methods included), one rank
speaks and writes, and a distributed encoder is never mistaken for a single-process one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from harness.cli import main

HERE = Path(__file__).parent


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on a 2-core machine
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("method", ["simclr", "pix2pix"])  # one optimiser; two optimisers, two backward passes
def test_ranks_hold_identical_weights_after_ddp_pretraining(tmp_path, method):
    done = torchrun(str(HERE / "distributed_pretrain.py"), method, str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"{method}-rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # each rank trained on its own crops and views (otherwise DDP would only repeat one process's work)
    assert ranks[0]["losses"] != ranks[1]["losses"]
    # ...and gradient averaging kept every parameter equal, not only the transferred encoder
    assert ranks[0]["parameters"] == ranks[1]["parameters"]
    assert ranks[0]["transferred"] == ranks[1]["transferred"] and ranks[0]["transferred"]


def test_harness_run_under_torchrun_speaks_once_and_records_the_world_size(tmp_path):
    out = tmp_path / "run"
    done = torchrun("-m", "harness", "run", "--method", "simclr", "--budget", "10%", "--profile", "smoke",
                    "--device", "cpu", "--quiet", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # one voice: rank 1 trains too, but neither logs nor writes
    assert done.stdout.count("record written to") == 1, done.stdout
    assert done.stdout.count("test headline:") == 1
    assert done.stdout.count("Mean over images") == 1
    record = json.loads((out / "record.json").read_text())
    assert record["device"]["world_size"] == "2"
    # a different recipe (twice the pretraining batch): its own settings, so never pooled with
    # single-process records nor taken for their grid cell
    assert record["settings"]["pretrain_world_size"] == 2
    cached = Path(os.environ["HARNESS_CACHE_DIR"]) / "pretrained" / f"simclr-{record['pretrain']['cache_key']}"
    assert json.loads((cached / "meta.json").read_text())["device"]["world_size"] == "2"


def test_world_size_enters_the_pretraining_cache_key(monkeypatch):
    """Distributed pretraining sees world_size x the batch: its encoder is a different one, so a
    single-process run must not reuse it (nor the reverse). Single-process keys stay unchanged."""
    from harness.methods.registry import get_method
    from harness.pipeline import Context, RunRequest, pretrain_cache_key

    entry = get_method("denoise")
    method = entry.cls({})
    ctx = Context(RunRequest(method="denoise", budget="1", profile="smoke", device="cpu"))
    single = pretrain_cache_key(entry, method, ctx, seed=0)
    assert "world_size" not in ctx.runtime.describe()
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets; the group itself is not needed here
    assert ctx.runtime.describe()["world_size"] == "2"
    assert pretrain_cache_key(entry, method, ctx, seed=0) != single


def test_fine_tuning_under_torchrun_equals_one_process(tmp_path):
    """Fine-tuning is not distributed: rank 0's record under torchrun must be, number for number,
    the record of a single process (no pretraining here, so the encoder is the same too)."""
    args = ["run", "--method", "none", "--budget", "1", "--profile", "smoke", "--device", "cpu", "--quiet"]
    done = torchrun("-m", "harness", *args, "--out", str(tmp_path / "ddp"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process ran
    try:
        single = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "one")], catch_exceptions=False)
    finally:
        torch.set_num_threads(threads)
    assert single.exit_code == 0, single.output
    ddp, one = (json.loads((tmp_path / d / "record.json").read_text()) for d in ("ddp", "one"))
    assert ddp["device"]["world_size"] == "2" and "world_size" not in one["device"]
    assert ddp["settings"] == one["settings"]  # nothing was pretrained: the same recipe, the same cell
    assert ddp["metrics"] == one["metrics"] and ddp["selection"] == one["selection"]
