"""scripts/pretext_reference.py states, without training, the rule without learning a run records."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harness.cli import main


def test_the_script_gives_the_number_a_run_records(script, tmp_path, one_thread):
    pretext = script("pretext_reference")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--profile", "smoke", "--quiet", "--method", "denoise", "--budget", "2",
                                       "--seed", "2", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "record.json").read_text())["pretrain"]["reference_loss"]
    assert recorded is not None and pretext.reference("denoise", 2, profile="smoke") == recorded
    assert pretext.reference("denoise", 3, profile="smoke") != recorded  # another seed draws other batches
    assert pretext.reference("byol", 2, profile="smoke") is None  # no fair rule: a constant output is its optimum


def test_fcmae_fill_levels_hold_the_rule_and_order_the_fills(script, one_thread):
    """The best inpainting is exactly FCMAE's recorded rule (same batches and masks); the cheat that
    knows each hidden patch's own mean beats every flat fill of the whole image."""
    levels = script("fcmae_fill_levels").fill_levels(0, profile="smoke")
    rule = script("pretext_reference").reference("fcmae", 0, profile="smoke")
    assert levels["inpainting, best width per batch (the rule)"] == pytest.approx(rule, rel=1e-9)
    patch_mean = levels["true mean of each patch (cheat)"]
    assert patch_mean < levels["true mean of the image (cheat)"] <= levels["visible mean of the image"] + 1e-6
