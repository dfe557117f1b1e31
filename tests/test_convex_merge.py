"""scripts/convex_merge.py: its `task` rule is the run's own reading (so it reproduces the run's test
record image by image), the merge joins the pieces of one convex blob and leaves touching particles
apart, and the report applies the declared bar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import disk

EMPS = Path(__file__).parent / "data" / "emps-mini"


def _disks(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int) -> tuple[np.ndarray, np.ndarray]:
    instances = np.zeros(shape, dtype=np.int32)
    for i, centre in enumerate(centres, start=1):
        rr, cc = disk(centre, radius, shape=shape)
        instances[rr, cc] = i
    return instances, instances > 0


def test_a_convex_blob_in_pieces_becomes_one_particle(script):
    merge = script("convex_merge").merge_convex
    instances, foreground = _disks((60, 60), [(30, 30)], 15)
    halves = np.where(np.arange(60)[None, :] < 30, 1, 2) * foreground  # one disk, split down the middle
    assert np.array_equal(merge(halves.astype(np.int32), foreground, 0.95), foreground.astype(np.int32))


def test_touching_particles_and_clusters_stay_apart(script):
    merge = script("convex_merge").merge_convex
    pair, pair_fg = _disks((60, 90), [(30, 30), (30, 59)], 15)  # touching disks: solidity 0.897
    assert np.array_equal(merge(pair, pair_fg, 0.90), pair)
    assert len(np.unique(merge(pair, pair_fg, 0.85))) == 2  # below the pair's solidity they merge
    chain, chain_fg = _disks((40, 130), [(20, 20), (20, 48), (20, 76), (20, 104)], 15)
    assert np.array_equal(merge(chain, chain_fg, 0.90), chain)
    # beside a touching pair, a split disk merges, the pair stays apart, and ids stay 1..N
    split, split_fg = _disks((60, 60), [(30, 30)], 15)
    split = np.where(np.arange(60)[None, :] < 30, 1, 2) * split_fg
    image = np.hstack([split, np.where(pair_fg, pair + 2, 0)]).astype(np.int32)
    merged = merge(image, image > 0, 0.90)
    assert sorted(np.unique(merged)) == [0, 1, 2, 3]
    assert len(np.unique(merged[:, :60])) == 2 and len(np.unique(merged[:, 60:])) == 3


def test_the_task_rule_is_the_runs_reading(script, resampled_emps_run):
    rows = script("convex_merge").read_split(resampled_emps_run, str(EMPS), "test", 0, progress=False)
    recorded = json.loads((resampled_emps_run / "per_image.json").read_text())  # the test split, in order
    assert len(rows) == len(recorded) > 0
    for row, image in zip(rows, recorded, strict=True):
        assert row["task"][:2] == pytest.approx([image["count_rel_error"], image["f1"] or 0.0])
        assert row["task"][2] == image["n_pred"]
        assert all(row[rule][2] <= row["task"][2] for rule in ("merge-0.90", "merge-0.95"))  # merging only


def test_the_report_applies_the_declared_bar(script):
    rows = [{"id": "a", "task": [2.0, 0.5, 6], "merge-0.90": [0.0, 0.6, 2], "merge-0.95": [2.0, 0.5, 6]},
            {"id": "b", "task": [0.0, 1.0, 4], "merge-0.90": [0.5, 0.7, 2], "merge-0.95": [0.25, 1.0, 3]}]
    lines = script("convex_merge").report(rows)
    assert lines[0] == "2 images; the task: mean count error 1.000, F1 0.750"
    # count falls (0.25 < 1.0) but F1 drops 0.1 and it is better on 1, worse on 1: not passed
    assert lines[1].startswith("merge-0.90: count 0.250") and "better on 1, worse on 1" in lines[1]
    assert lines[1].endswith("declared bar not passed")
    assert lines[2].startswith("merge-0.95: count 1.125") and lines[2].endswith("declared bar not passed")
