"""scripts/pretext_reference.py states, without training, the rule without learning a run records."""

from __future__ import annotations

import json

import pytest
import torch
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


def test_the_network_is_scored_on_the_rules_own_draws_and_left_as_it_was(monkeypatch, one_thread):
    """Paired batch by batch: a denoiser that returns its noisy input scores exactly the rule that keeps
    the noisy crop (no blur), which it can only do on the very crops and noise the rule drew. The
    module's state is put back and the rule's value does not move."""
    import harness_denoise

    from harness.context import Context, RunRequest
    from harness.methods.registry import get_method
    from harness.training import loop

    ctx = Context(RunRequest(method="denoise", budget="1", profile="smoke", seed=3, progress=False))
    store = ctx.store(ctx.manifest.pools["unlabeled"], with_targets=False)
    method = get_method("denoise").cls({})
    module = loop.build_pretrain_module(method, ctx.settings, 3)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    rule, network = loop.reference_pretext_loss(module, store, ctx.settings, ctx.runtime, 3, 4, network=True)
    assert rule == loop.reference_pretext_loss(module, store, ctx.settings, ctx.runtime, 3, 4)[0]
    assert network is not None and network != rule  # an untrained network is no blur
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    monkeypatch.setattr(harness_denoise, "BLUR_SIGMAS", ())
    monkeypatch.setattr(harness_denoise.DenoiseModule, "restore", lambda self, noisy: noisy)
    rule, network = loop.reference_pretext_loss(module, store, ctx.settings, ctx.runtime, 3, 4, network=True)
    assert network == pytest.approx(rule, rel=1e-6)
    other = loop.reference_pretext_loss(module, store, ctx.settings, ctx.runtime, 4, 4, network=True)
    assert other[1] != pytest.approx(rule, rel=1e-6)  # other draws: the pairing is what makes them equal
