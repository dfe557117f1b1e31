"""scripts/ensemble_look.py: an average of a network with itself reads as that network (thresholds and
test images as its record states them), and networks read differently are never averaged."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

EMPS = Path(__file__).parent / "data" / "emps-mini"


def test_an_average_of_a_network_with_itself_is_that_network(script, resampled_emps_run):
    run_dir = resampled_emps_run
    module = script("ensemble_look")
    reading = module.read_split([run_dir, run_dir], str(EMPS), "test", 0, progress=False)
    record = json.loads((run_dir / "record.json").read_text())
    assert reading["params"] == record["postprocess"]["params"]  # tuned on validation as the run tuned
    assert reading["tuned_score"] == pytest.approx(record["postprocess"]["score"])
    recorded = json.loads((run_dir / "per_image.json").read_text())  # the test split, in manifest order
    assert len(reading["rows"]) == len(recorded) > 0
    for row, image in zip(reading["rows"], recorded, strict=True):
        assert [row["count"], row["f1"]] == pytest.approx([image["count_rel_error"], image["f1"] or 0.0])
    lines = module.report(reading)
    assert lines[0].startswith("2 networks averaged")
    assert f"test: {len(recorded)} images" in lines[1]


def test_networks_read_differently_are_never_averaged(script):
    module = script("ensemble_look")
    same = {"task": "distmap-v3", "working_scale": 0.307, "second_look_px": 32.0, "selection": "f1-count"}
    runs = [Path("a"), Path("b")]
    assert module.shared_reading(runs, [same, dict(same)]) == same
    with pytest.raises(click.UsageError, match=r"--run b: task 'flows-v1', but a has 'distmap-v3'"):
        module.shared_reading(runs, [same, {**same, "task": "flows-v1"}])
    with pytest.raises(click.UsageError, match="working_scale 0.5"):
        module.shared_reading(runs, [same, {**same, "working_scale": 0.5}])


def test_one_network_is_refused(script, tmp_path):
    result = CliRunner().invoke(script("ensemble_look").main, ["--run", str(tmp_path), "--dataset", str(EMPS)])
    assert result.exit_code == 2 and "give --run at least twice" in result.output
