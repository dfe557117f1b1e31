"""Pretraining under ``torchrun`` (DDP on CPU with gloo): two real processes on this machine.

What must hold before the loop scales past one process: ranks stay in step (every parameter of
every method identical on all ranks after training, two-optimiser methods included), one rank
speaks and writes, and a distributed encoder is never mistaken for a single-process one.
"""

from __future__ import annotations

import json
import os
import shutil
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


# one optimiser, negatives gathered over the ranks; two optimisers, two backward passes; keys of every rank
# enqueued (the queue is a buffer DDP broadcasts from rank 0: gathered keys keep every rank's equal anyway)
@pytest.mark.parametrize("method", ["simclr", "pix2pix", "moco"])
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


def test_harness_run_under_torchrun_speaks_once_and_records_the_world_size(torchrun_whole):
    root, done = torchrun_whole
    # one voice: rank 1 trains too, but neither logs nor writes
    assert done.stdout.count("record written to") == 1, done.stdout
    assert done.stdout.count("test headline:") == 1
    assert done.stdout.count("Mean over images") == 1
    record = json.loads((root / "whole" / "record.json").read_text())
    assert record["device"]["world_size"] == "2"
    # a different recipe (twice the pretraining batch): its own settings, so never pooled with
    # single-process records nor taken for their grid cell
    assert record["settings"]["pretrain_world_size"] == 2
    cached = root / "cache-whole" / "pretrained" / f"simclr-{record['pretrain']['cache_key']}"
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


# Under torchrun: after the first pretraining checkpoint every rank has written (a barrier makes
# sure), each rank kills itself with SIGKILL, as a cluster ending the job would.
_KILL_AFTER_SAVE = """
import os, signal, sys
import torch.distributed as dist
import harness.training.checkpoint as checkpoint
from harness.cli import main

save = checkpoint.Checkpointing.save

def save_then_die(self, *args, **kwargs):
    save(self, *args, **kwargs)
    if not self.path.name.startswith("finetune-"):
        dist.barrier()
        os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[1] == "kill":
    checkpoint.Checkpointing.save = save_then_die
sys.argv = ["harness", *sys.argv[2:]]
main()
"""


# A pretraining method, checkpoints every 2 of the smoke profile's 4 pretraining steps.
_KILL_ARGS = ["run", "--method", "simclr", "--budget", "1", "--seed", "2", "--profile", "smoke", "--device", "cpu",
              "--quiet", "--checkpoint-every", "2steps"]


def _launch(root: Path, fault: str, out: str, cache: str) -> subprocess.CompletedProcess:
    script = root / "wrapper.py"
    script.write_text(_KILL_AFTER_SAVE)
    env = {**os.environ, "HARNESS_CACHE_DIR": str(root / cache), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(script), fault, *_KILL_ARGS, "--out", str(root / out)]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def torchrun_whole(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One ``harness run`` under torchrun that nothing stops (two tests read it: each launch costs ~12 s)."""
    root = tmp_path_factory.mktemp("torchrun")
    done = _launch(root, "none", "whole", "cache-whole")
    assert done.returncode == 0, done.stderr[-3000:]
    return root, done


def test_a_killed_torchrun_pretraining_resumes_on_every_rank_with_the_same_numbers(torchrun_whole, tmp_path):
    """kill -9 of every rank after a checkpoint; the same torchrun command resumes all ranks from it
    and files the numbers of a run never stopped. If one rank's file is of another step (or gone),
    no rank resumes: they all start again, since ranks at different steps would deadlock."""

    def numbers(root: Path, out: str) -> dict:
        record = json.loads((root / out / "record.json").read_text())
        return {k: record[k] for k in ("metrics", "selection", "postprocess", "settings")} | {
            "loss": record["pretrain"]["final_loss"]}

    expected = numbers(torchrun_whole[0], "whole")
    killed = _launch(tmp_path, "kill", "run", "cache")
    assert killed.returncode != 0 and not (tmp_path / "run" / "record.json").exists()
    saved = sorted((tmp_path / "cache" / "pretrained").glob("*/checkpoint-rank*.pt"))
    assert [p.name for p in saved] == ["checkpoint-rank0.pt", "checkpoint-rank1.pt"]
    shutil.copytree(tmp_path / "cache", tmp_path / "cache-again")  # the same kill, for the second case
    resumed = _launch(tmp_path, "none", "run", "cache")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("pretraining: resuming from step 2 of 4") == 1, resumed.stdout  # rank 0 speaks
    assert numbers(tmp_path, "run") == expected
    assert not list((tmp_path / "cache").rglob("checkpoint-rank*.pt"))

    (rank1,) = (tmp_path / "cache-again" / "pretrained").glob("*/checkpoint-rank1.pt")
    rank1.unlink()  # as if rank 1 had died before its first checkpoint
    restarted = _launch(tmp_path, "none", "again", "cache-again")
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "checkpoints disagree (from none to step 2); every rank starts from step 0" in restarted.stdout
    assert "resuming" not in restarted.stdout
    assert numbers(tmp_path, "again") == expected


def test_each_torchrun_rank_makes_its_own_gpu_current_before_joining(monkeypatch):
    """nccl puts a tensor made without a device (the checkpoint's all-reduced rank flags) on the current
    GPU: every rank must make its LOCAL_RANK GPU current before any collective, or all land on cuda:0.
    Checked without a GPU: what resolve_runtime asks of torch.cuda, in order."""
    import torch

    from harness.training import runtime

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: calls.append(("set_device", str(dev))))
    monkeypatch.setattr(runtime, "init_distributed", lambda kind: calls.append(("join", kind)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert runtime.resolve_runtime("auto").device == torch.device("cuda", 1)
    assert calls == [("set_device", "cuda:1"), ("join", "cuda")]


@pytest.mark.parametrize("method", ["simclr", "moco", "barlowtwins"])
def test_losses_that_pool_a_batch_pool_it_over_the_ranks(method):
    """Under torchrun a rank's batch is a slice of the step's: SimCLR's negatives, Barlow Twins'
    cross-correlation and MoCo's enqueued keys are gathered over the ranks (lightly's switch; a single
    process is unaffected, which the methods' own loss tests pin)."""
    from harness.methods.registry import get_method
    from harness.models import create_backbone

    module = get_method(method).cls({}).build(create_backbone("test_resnet", in_chans=1))
    assert module.criterion.gather_distributed
    if method == "moco":
        assert module.criterion.memory_bank.gather_distributed


def test_ranks_reuse_a_cached_encoder_only_if_every_rank_has_it(monkeypatch, tmp_path):
    """A cache on each node's own disk: rank 0 holding the encoder and rank 1 not would leave rank 1
    pretraining alone while rank 0 waits in DDP's collectives. One rank missing it: all pretrain."""
    from harness import pipeline
    from harness.methods.registry import get_method

    entry = get_method("denoise")
    method = entry.cls({})
    ctx = pipeline.Context(pipeline.RunRequest(method="denoise", budget="1", profile="smoke", device="cpu"))
    monkeypatch.setattr(pipeline, "read_cached_encoder", lambda _dir: ({}, {"created": "then", "steps": 1,
                                                                           "final_loss": 1.0}))
    monkeypatch.setattr(pipeline, "world_size", lambda: 2)

    class Pretrained(Exception):
        pass

    def pretrain(*_args, **_kwargs):
        raise Pretrained

    monkeypatch.setattr(pipeline, "pretrain", pretrain)
    said: list[str] = []
    monkeypatch.setattr(pipeline, "max_over_ranks", lambda *values: [1])  # another rank lacks it
    with pytest.raises(Pretrained):
        pipeline.obtain_encoder(entry, method, ctx, 0, False, said.append)
    assert any("another rank has no cached" in line for line in said)
    monkeypatch.setattr(pipeline, "max_over_ranks", lambda *values: [0])  # every rank has it
    state, info, _ = pipeline.obtain_encoder(entry, method, ctx, 0, False, said.append)
    assert info.reused_cache
