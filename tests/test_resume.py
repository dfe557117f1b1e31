"""Long runs survive: a run killed (kill -9) after a checkpoint, or stopped by SIGTERM, resumes
when the same command runs again, and its record equals an uninterrupted run's
(issue: nothing lost, "checkpoints and resume")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.training.checkpoint import parse_interval

# The same command every time: a pretraining method, two labelled images, checkpoints every 2 steps
# (smoke: 4 pretraining steps, 6 fine-tuning steps with validation at 3 and 6).
COMMAND = ["run", "--method", "denoise", "--budget", "2", "--seed", "4", "--profile", "smoke", "--quiet",
           "--checkpoint-every", "2steps"]

# Runs harness with one fault injected: kill -9 right after the first checkpoint of STAGE is
# written, SIGTERM to itself during step 1 of STAGE or during its last step (where no save follows),
# or kill -9 once STAGE's steps are over but before its result is stored.
_WRAPPER = """
import os, signal, sys
import harness.pipeline as pipeline
import harness.training.checkpoint as checkpoint
from harness.cli import main

fault, stage = sys.argv[1], sys.argv[2]
save, due = checkpoint.Checkpointing.save, checkpoint.Checkpointing.due
stop_requested = checkpoint.Checkpointing.stop_requested

def in_stage(self):
    return self.path.name.startswith("finetune-") == (stage == "finetune")

def save_then_die(self, *args, **kwargs):
    save(self, *args, **kwargs)
    if in_stage(self):
        os.kill(os.getpid(), signal.SIGKILL)

def due_after_sigterm(self, steps_done):
    if in_stage(self) and steps_done == 1:
        os.kill(os.getpid(), signal.SIGTERM)
    return due(self, steps_done)

def sigterm_in_last_step(self):
    if in_stage(self):
        os.kill(os.getpid(), signal.SIGTERM)
    return stop_requested(self)

def die_before_storing(real):
    def wrapped(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    return wrapped

if fault == "kill":
    checkpoint.Checkpointing.save = save_then_die
elif fault == "term":
    checkpoint.Checkpointing.due = due_after_sigterm
elif fault == "term-last":
    checkpoint.Checkpointing.stop_requested = sigterm_in_last_step
elif fault == "kill-after" and stage == "pretrain":
    pipeline.save = die_before_storing(pipeline.save)  # the encoder's bytes, just before they are stored
elif fault == "kill-after":
    pipeline.tune_postprocessing = die_before_storing(pipeline.tune_postprocessing)
sys.argv = ["harness", *sys.argv[3:]]
main()
"""


def harness(tmp: Path, cache: Path, out: Path, fault: str = "none", stage: str = "pretrain"):
    script = tmp / "wrapper.py"
    script.write_text(_WRAPPER)
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(script), fault, stage, *COMMAND, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)


def resumed_from(out: Path) -> dict | None:
    """What the record states of the stages a checkpoint resumed (their timings cover only the rest)."""
    return json.loads((out / "record.json").read_text()).get("resumed_from")


def numbers(out: Path) -> dict:
    record = json.loads((out / "record.json").read_text())
    return {"metrics": record["metrics"], "selection": record["selection"], "postprocess": record["postprocess"],
            "pretrain_loss": record["pretrain"]["final_loss"], "steps": record["pretrain"]["steps"]}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("whole")
    done = harness(tmp, tmp / "cache", tmp / "run")
    assert done.returncode == 0, done.stderr
    assert "resuming" not in done.stdout + done.stderr
    assert resumed_from(tmp / "run") is None  # and not written at all: such records keep their bytes
    assert not list((tmp / "cache").rglob("*checkpoint*.pt")) and not list((tmp / "cache").rglob("finetune-*.pt"))
    return tmp / "cache", numbers(tmp / "run")


def test_killed_during_pretraining_resumes_with_the_same_numbers(uninterrupted, tmp_path):
    _, expected = uninterrupted
    killed = harness(tmp_path, tmp_path / "cache", tmp_path / "run", "kill", "pretrain")
    assert killed.returncode == -9 and not (tmp_path / "run" / "record.json").exists()
    assert list((tmp_path / "cache" / "pretrained").glob("*/checkpoint.pt"))
    again = harness(tmp_path, tmp_path / "cache", tmp_path / "run")
    assert again.returncode == 0, again.stderr
    assert "pretraining: resuming from step 2 of 4" in again.stdout
    assert numbers(tmp_path / "run") == expected
    assert resumed_from(tmp_path / "run") == {"pretrain": 2}
    assert not list((tmp_path / "cache").rglob("checkpoint.pt"))  # removed once the stage completed


@pytest.mark.parametrize("fault", ["kill", "term"])
def test_stopped_during_fine_tuning_resumes_with_the_same_numbers(uninterrupted, tmp_path, fault):
    cache, expected = uninterrupted  # its encoder is cached: only fine-tuning runs
    stopped = harness(tmp_path, cache, tmp_path / "run", fault, "finetune")
    if fault == "kill":
        assert stopped.returncode == -9
        resumed_at = 2
    else:  # SIGTERM: saved after the current step, one line, no traceback
        assert stopped.returncode == 2 and "Traceback" not in stopped.stderr
        assert "stopped by signal SIGTERM after step 1; checkpoint saved" in stopped.stderr
        resumed_at = 1
    assert not (tmp_path / "run" / "record.json").exists()
    again = harness(tmp_path, cache, tmp_path / "run")
    assert again.returncode == 0, again.stderr
    assert f"fine-tuning: resuming from step {resumed_at} of 6" in again.stdout
    assert numbers(tmp_path / "run") == expected
    assert resumed_from(tmp_path / "run") == {"finetune": resumed_at}  # the encoder was reused, not resumed
    assert not list(cache.rglob("finetune-*.pt"))


@pytest.mark.parametrize(("fault", "stops"), [
    ("term-last", ("pretraining: resuming from step 4 of 4", "fine-tuning: resuming from step 6 of 6")),
    ("kill-after", ("pretraining: resuming from step 2 of 4", "fine-tuning: resuming from step 4 of 6")),
])
def test_a_stop_after_the_last_step_is_neither_swallowed_nor_a_restart(uninterrupted, tmp_path, fault, stops):
    """A signal during a stage's last step (no save follows it) once let the run carry on as if none had
    come; a stage's checkpoint was removed before its encoder or record was stored, so a kill while tuning
    or testing started fine-tuning again from step 0. One chain per fault, each stage in turn: stopped in
    pretraining; run again, it resumes pretraining and is stopped in fine-tuning; run again, it resumes
    fine-tuning and files the numbers of a run never stopped."""
    _, expected = uninterrupted
    cache, out = tmp_path / "cache", tmp_path / "run"
    for stage, steps, resumed in (("pretrain", 4, None), ("finetune", 6, stops[0])):
        stopped = harness(tmp_path, cache, out, fault, stage)
        if resumed is not None:
            assert resumed in stopped.stdout, stopped.stdout
        if fault == "term-last":
            assert stopped.returncode == 2 and "Traceback" not in stopped.stderr
            assert f"stopped by signal SIGTERM after step {steps}; checkpoint saved" in stopped.stderr
        else:
            assert stopped.returncode == -9
        assert not (out / "record.json").exists()
    again = harness(tmp_path, cache, out)
    assert again.returncode == 0, again.stderr
    assert stops[1] in again.stdout and "pretraining: resuming" not in again.stdout  # the encoder was stored
    assert numbers(out) == expected
    assert resumed_from(out) == {"finetune": int(stops[1].split()[4])}
    assert not list(cache.rglob("finetune-*.pt")) and not list(cache.rglob("checkpoint.pt"))


@pytest.mark.parametrize(("text", "parsed"), [
    ("10m", (600.0, None)), ("90s", (90.0, None)), ("2h", (7200.0, None)), ("500steps", (None, 500)),
    ("1step", (None, 1)), ("off", (None, None)),
])
def test_checkpoint_intervals(text, parsed):
    assert parse_interval(text) == parsed


@pytest.mark.parametrize("text", ["5x", "0m", "-3steps", "steps", ""])
def test_bad_checkpoint_intervals_are_refused(text):
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="checkpoint interval"):
        parse_interval(text)



class _SignalDispositions(torch.utils.data.Dataset):
    """Each item: whether the process serving it ignores SIGTERM and USR2."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> bool:
        return all(signal.getsignal(s) == signal.SIG_IGN for s in (signal.SIGTERM, signal.SIGUSR2))


def test_loader_workers_leave_stop_signals_to_the_main_process():
    """Workers are forked before a stage installs its handlers: they must not run what was there before
    (submitit's requeue handler) when the cluster signals every process of the job."""
    from harness.training.loop import _loader
    from harness.training.settings import settings_for

    settings = settings_for("smoke", num_workers=1)
    assert list(_loader(_SignalDispositions(), settings)) == [True, True]
