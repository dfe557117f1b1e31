"""scripts/foreground_look.py: its `shipped` rule is the task's own second look (so it reproduces the
run's test record image by image), and its report compares each foreground rule with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main

EMPS = Path(__file__).parent / "data" / "emps-mini"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A smoke run that resamples (as if the network's view held 20 px particles at most), so each image
    gets the second look; the settings are the ones tests/test_real_folder.py uses for that."""
    import harness.context as context

    original = context.settings_for

    def small_view(profile: str, **overrides):
        return original(profile, **overrides).model_copy(update={"scale_max_diameter_px": 20.0,
                                                                 "scale_target_diameter_px": 16.0})

    out = tmp_path_factory.mktemp("runs") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(context, "settings_for", small_view)
        result = CliRunner().invoke(main, ["run", "--method", "none", "--budget", "100%", "--profile", "smoke",
                                           "--dataset", str(EMPS), "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_shipped_rule_is_the_tasks_look(script, run_dir):
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
