"""scripts/pretext_reference.py states, without training, the rule without learning a run records."""

from __future__ import annotations

import json

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
