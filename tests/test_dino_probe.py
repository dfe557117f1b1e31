"""scripts/dino_probe.py reads DINO's networks along a run without moving the run's numbers."""

from __future__ import annotations

import math

import pytest

from harness.context import Context, RunRequest
from harness.methods.registry import get_method
from harness.training import loop

CONFIG = {"output_dim": 16, "hidden_dim": 32, "bottleneck_dim": 8, "n_local_crops": 2}


def test_the_probe_reads_the_networks_and_moves_no_number(script, one_thread):
    result = script("dino_probe").probe(CONFIG, seed=1, profile="smoke", every=1)
    ctx = Context(RunRequest(method="dino", budget="1", profile="smoke", seed=1, progress=False))
    store = ctx.store(ctx.manifest.pools["unlabeled"], with_targets=False)
    _, plain = loop.pretrain(get_method("dino").cls(CONFIG), store, ctx.settings, ctx.runtime, 1, progress=False)
    assert result["losses"] == plain.losses  # the readings draw no random number
    # the ratio the pretext table shows: the network on the rule's own batches over the rule
    assert result["held_out"] == plain.held_out_loss is not None
    assert result["rule"] == pytest.approx(math.log(16)) and result["ratio"] == pytest.approx(
        plain.held_out_loss / math.log(16))
    assert [row["step"] for row in result["rows"]] == list(range(ctx.settings.pretrain_steps))
    for row in result["rows"]:
        assert 0 < row["H_student"] <= row["log_K"] + 1e-6 and 0 < row["H_teacher"] <= row["log_K"] + 1e-6
        # the entropy of the batch's mean distribution is at least the mean entropy (concavity)
        assert row["H_teacher_batch"] >= row["H_teacher"] - 1e-6
        assert 0 < row["spread"] < 1 and row["isotropic"] == pytest.approx(1 / math.sqrt(320))


def test_the_command_line_prints_the_readings_and_the_ratio(script, one_thread):
    from click.testing import CliRunner

    args = ["--profile", "smoke", "--every", "2", *(f"--config={k}={v}" for k, v in CONFIG.items())]
    result = CliRunner().invoke(script("dino_probe").main, args)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split()[1] for line in lines[:-1]] == ["0", "2", "3"] and "ratio" in lines[-1]
    assert "on the rule's batches" in lines[-1]
    bad = CliRunner().invoke(script("dino_probe").main, ["--profile", "smoke", "--config", "lr"])
    assert bad.exit_code == 1 and "Error: --config 'lr' is not key=value" in bad.output
    zero = CliRunner().invoke(script("dino_probe").main, ["--profile", "smoke", "--every", "0"])
    assert zero.exit_code == 2 and "--every" in zero.output and "Traceback" not in zero.output
