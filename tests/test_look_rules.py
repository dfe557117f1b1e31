"""scripts/look_rules.py: each per-image factor rule picks what its description says."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def rules(script):
    return script("look_rules")


def _factor(mult, err, n, counts, dis, disfg, peak, width):
    return {"mult": mult, "factor": 0.3 * mult, "err": err, "f1": 1.0 - err / 10, "n": n, "counts": counts,
            "dis": dis, "disfg": disfg, "peak": peak, "width": width}


# one image, five factors; each feature singles out a different one, so a rule reading the wrong
# feature (or the wrong direction) picks another factor
ROW = {"id": "x", "look": [0.2, 0.9], "factors": [
    _factor(0.5, 0.4, 4, [4, 4, 4, 4, 4, 4, 4, 4], 0.30, 0.05, 0.60, 60.0),   # views agree
    _factor(0.707, 0.3, 8, [6, 9, 8, 7, 8, 9, 8, 9], 0.05, 0.20, 0.70, 45.0),  # least map spread
    _factor(1.0, 0.5, 9, [5, 12, 9, 7, 9, 11, 8, 10], 0.20, 0.20, 0.75, 31.0),  # the run's; width nearest 32
    _factor(1.414, 0.1, 9, [5, 14, 9, 7, 9, 11, 8, 10], 0.25, 0.30, 0.90, 20.0),  # best (truth); highest peak
    _factor(2.0, 0.9, 20, [15, 25, 20, 18, 22, 19, 21, 20], 0.40, 0.40, 0.50, 12.0),
]}


@pytest.mark.parametrize(("rule", "shrinking_only", "enlarging"), [
    ("run", 1.0, 1.0), ("agree", 0.5, 0.5), ("dis", 0.707, 0.707), ("disfg", 0.5, 0.5),
    ("peak", 1.0, 1.414), ("width", 1.0, 1.0), ("oracle", 0.707, 1.414),
    # counts 4, 8, 9, 9, 20: the change between neighbours is least around 1.0 (8 -> 9)
    ("plateau", 0.707, 1.0),
])
def test_each_rule_picks_the_factor_its_feature_singles_out(rules, rule, shrinking_only, enlarging):
    assert rules.pick(ROW, rule, enlarge=False)["mult"] == shrinking_only
    assert rules.pick(ROW, rule, enlarge=True)["mult"] == enlarging


def test_the_report_compares_every_rule_with_the_tasks_look(rules):
    lines = rules.report([ROW, {**ROW, "id": "y", "look": [0.5, 0.8]}])
    assert lines[0] == "2 images; the task's look: mean count error 0.350, F1 0.850"
    assert sum(line.strip().startswith("oracle") for line in lines) == 2
    oracle = next(line for line in lines if line.strip().startswith("oracle"))
    assert "count 0.300" in oracle  # both images' best shrinking factor: 0.707, error 0.3


def test_the_distance_map_diagnostics_refuse_other_tasks_in_one_line(script, tmp_path, monkeypatch):
    """look_rules and convex_merge read the distance map: a run of another task is refused by name."""
    import json

    import click

    diagnostic = script("_split_diagnostic")
    (tmp_path / "record.json").write_text(json.dumps({"postprocess": {"params": {"seed_threshold": 0.5}}}))
    for version, refused in (("band-v1", True), ("flows-v1", True), ("distmap-v3", False)):
        monkeypatch.setattr(diagnostic, "load_model", lambda run_dir, v=version: ("net", {"task": v,
                                                                                          "working_scale": 0.5}))
        if refused:
            with pytest.raises(click.UsageError, match=f"made with task {version}; this diagnostic reads distmap"):
                diagnostic.load_run(tmp_path, distmap_only=True)
            assert diagnostic.load_run(tmp_path)[2].version == version  # the other diagnostics read any task
        else:
            net, card, task, scale, params = diagnostic.load_run(tmp_path, distmap_only=True)
            assert (net, task.version, scale, params) == ("net", version, 0.5, {"seed_threshold": 0.5})
