"""scripts/foreground_look.py: its `shipped` rule is the task's own second look (so it reproduces the
run's test record image by image), and its report compares each foreground rule with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EMPS = Path(__file__).parent / "data" / "emps-mini"


def test_the_shipped_rule_is_the_tasks_look(script, resampled_emps_run):
    run_dir = resampled_emps_run
    card = json.loads((run_dir / "record.json").read_text())
    assert card["postprocess"]["working_scale"] < 1 and card["postprocess"]["second_look_px"]  # a look to read
    rows = script("foreground_look").read_split(run_dir, str(EMPS), "test", 0, progress=False)
    recorded = json.loads((run_dir / "per_image.json").read_text())  # the test split, in manifest order
    assert len(rows) == len(recorded) > 0
    for row, image in zip(rows, recorded, strict=True):
        assert row["shipped"] == pytest.approx([image["count_rel_error"], image["f1"] or 0.0])
        assert set(row["factors"]) == {"shipped", "fg-run", "fg-wider"}
        assert all(0 < f <= card["postprocess"]["working_scale"] for f in row["factors"].values())
    # the look is exercised: some image is read at a factor of its own, and there the rules part
    assert any(r["factors"]["shipped"] < card["postprocess"]["working_scale"] for r in rows)
    assert any(r["factors"]["fg-wider"] != r["factors"]["shipped"] for r in rows)


def test_the_report_pairs_each_rule_with_the_shipped_look(script):
    rows = [{"id": "a", "factors": {"shipped": 0.3, "fg-run": 0.3, "fg-wider": 0.2},
             "shipped": [2.0, 0.5], "fg-run": [2.0, 0.5], "fg-wider": [0.5, 0.8]},
            {"id": "b", "factors": {"shipped": 0.3, "fg-run": 0.2, "fg-wider": 0.2},
             "shipped": [0.0, 1.0], "fg-run": [0.2, 0.9], "fg-wider": [0.2, 0.9]}]
    lines = script("foreground_look").report(rows)
    assert lines[0] == "2 images; shipped look: mean count error 1.000, F1 0.750"
    assert lines[1].startswith("fg-run: count 1.100") and "lower on 0, higher on 1" in lines[1]
    assert lines[2].startswith("fg-wider: count 0.350") and "lower on 1, higher on 1" in lines[2]
    assert lines[2].endswith("factor changed on 2")
