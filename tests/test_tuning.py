"""Tuning scores each distinct labelling of an image once: every candidate still gets exactly the
scores a reading of that candidate alone gives."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

import harness.evaluation.tuning as tuning
from harness.data.synthetic import SyntheticDataset
from harness.evaluation.predict import labels_from_maps
from harness.metrics import score_image
from harness.task import get_task


def test_each_candidate_gets_the_scores_of_its_own_labels_while_duplicates_are_scored_once(monkeypatch):
    task = get_task("distmap-v3")
    dataset = SyntheticDataset("SEM", "smoke")
    samples = [dataset.load(i) for i in list(dataset.index()["id"][:2])]
    rng = np.random.default_rng(0)
    maps = []
    for sample in samples:
        truth = task.truth_maps(sample.mask[: sample.valid_rows])
        noisy = ndimage.gaussian_filter(truth + rng.normal(0, 0.15, truth.shape), (0, 1.5, 1.5))
        maps.append(np.clip(noisy, 0, 1).astype(np.float32))
    candidates = task.candidates()
    calls = []
    scored = tuning.score_labels  # the one scoring road (a synthetic sample: its whole truth)
    monkeypatch.setattr(tuning, "score_labels", lambda *args: calls.append(1) or scored(*args))
    scores = tuning.score_candidates(maps, samples, task, candidates)
    assert len(scores) == len(candidates) and all(len(row) == len(samples) for row in scores)
    for params, row in zip(candidates, scores, strict=True):
        for m, sample, got in zip(maps, samples, row, strict=True):
            alone = score_image(labels_from_maps(m, sample, task, params), sample.truth, sample.pixel_size_nm,
                                sample.databar_rows)
            assert got == alone, params
    distinct = sum(len({labels_from_maps(m, s, task, p).tobytes() for p in candidates}) for m, s in zip(maps, samples))
    assert len(calls) == distinct < len(candidates) * len(samples)
