"""Post-processing tuning: distmap-v3's grid read one candidate at a time against the task's grid
reader, side by side.

Run: ``.venv/bin/pytest benchmarks/bench_tuning.py --benchmark-enable -q -s``

Tuning scores every candidate of the task's grid on every validation image (240 for distmap-v3).
Read one at a time, each candidate recomputes the smoothing, the h-maxima reconstruction and the
watershed; the grid reader (:func:`harness.task.distmap.distance_instances_grid`) computes each
stage once for the candidates that share its parameters. Both read the same maps: the true maps
of 8 quick synthetic-sem images with noise and blur, so that thresholds matter as they do for a
network's maps. The labels must be identical; interleaved, best of 3. Target: the grid reader at
least 3x faster.

Second, tuning's scoring: the candidates often label an image identically, and
:func:`harness.evaluation.tuning.score_candidates` scores each distinct labelling once, against
scoring every candidate's labels. The scores must be identical. Target: at least 1.3x faster.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from timing import best_seconds  # benchmarks/timing.py (pytest puts benchmarks/ on the path)

from harness.data.synthetic import SyntheticDataset
from harness.evaluation.predict import labels_from_instances, score_labels
from harness.evaluation.tuning import score_candidates
from harness.task import get_task

VERSION, IMAGES, TARGET, SCORING_TARGET = "distmap-v3", 8, 3.0, 1.3


@pytest.fixture(scope="module")
def samples_and_maps(tmp_path_factory):
    import os

    os.environ["HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("bench-tuning"))
    ds = SyntheticDataset("SEM", "quick")
    rng = np.random.default_rng(0)
    task = get_task(VERSION)
    samples, maps = [], []
    for sample_id in list(ds.index()["id"][:IMAGES]):
        samples.append(ds.load(sample_id))
        truth = task.truth_maps(samples[-1].mask[: samples[-1].valid_rows])
        noisy = ndimage.gaussian_filter(truth + rng.normal(0, 0.15, truth.shape), (0, 1.5, 1.5))
        maps.append(np.clip(noisy, 0, 1).astype(np.float32))
    return samples, maps


@pytest.fixture(scope="module")
def network_like_maps(samples_and_maps):
    return samples_and_maps[1]


def test_grid_reader_vs_one_candidate_at_a_time(network_like_maps):
    task = get_task(VERSION)
    candidates = task.candidates()
    one_at_a_time = [[task.to_instances(m, p) for p in candidates] for m in network_like_maps]
    at_once = [list(task.to_instances_each(m, candidates)) for m in network_like_maps]
    for alone, together in zip(one_at_a_time, at_once, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
    best = best_seconds({
        "one at a time": lambda: [[task.to_instances(m, p) for p in candidates] for m in network_like_maps],
        "grid reader": lambda: [list(task.to_instances_each(m, candidates)) for m in network_like_maps],
    }, rounds=3)
    per_image = {name: seconds / IMAGES * 1e3 for name, seconds in best.items()}
    ratio = best["one at a time"] / best["grid reader"]
    print(
        f"\n{VERSION}: {len(candidates)} candidates on {IMAGES} images of {network_like_maps[0].shape[1:]} px, "
        f"{torch.get_num_threads()} threads (best of 3), identical labels:\n"
        f"  one at a time {per_image['one at a time']:8.1f} ms/image\n"
        f"  grid reader   {per_image['grid reader']:8.1f} ms/image\n"
        f"  speed-up {ratio:.2f}x  (target >= {TARGET})"
    )
    assert ratio >= TARGET - 0.5, f"the grid reader is only {ratio:.2f}x faster"  # slack: shared machine


def test_scoring_each_distinct_labelling_once_vs_every_candidate(samples_and_maps):
    samples, maps = samples_and_maps
    task = get_task(VERSION)
    candidates = task.candidates()

    def every_candidate():
        per_image = [[score_labels(labels_from_instances(i, s), s)
                      for i in task.to_instances_each(m, candidates)] for m, s in zip(maps, samples, strict=True)]
        return [[scores[c] for scores in per_image] for c in range(len(candidates))]

    assert score_candidates(maps, samples, task, candidates) == every_candidate()
    best = best_seconds({"every candidate": every_candidate,
                         "each distinct once": lambda: score_candidates(maps, samples, task, candidates)}, rounds=3)
    ratio = best["every candidate"] / best["each distinct once"]
    print(
        f"\n{VERSION} tuning, {len(candidates)} candidates on {IMAGES} images, {torch.get_num_threads()} threads "
        f"(best of 3), identical scores:\n"
        f"  every candidate scored     {best['every candidate'] / IMAGES * 1e3:8.1f} ms/image\n"
        f"  each distinct labelling    {best['each distinct once'] / IMAGES * 1e3:8.1f} ms/image\n"
        f"  speed-up {ratio:.2f}x  (target >= {SCORING_TARGET})"
    )
    assert ratio >= SCORING_TARGET - 0.2, f"scoring each distinct labelling once is only {ratio:.2f}x faster"
