"""The reference rows: the oracle is the task's floor, classical is a real no-learning pipeline,
and both are filed like any run, at every budget, with the same number."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from harness.methods.reference import classical_instances
from harness.methods.registry import get_method
from harness.pipeline import RunRequest, run_one
from tests.test_task import matched_f1


def separate_disks(shape=(96, 96)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.int32)
    for label, (r, c, radius) in enumerate([(20, 20, 8), (20, 60, 10), (60, 30, 9), (70, 75, 7)], start=1):
        rr, cc = disk((r, c), radius, shape=shape)
        mask[rr, cc] = label
    return mask


@pytest.mark.parametrize("modality", ["SEM", "TEM", None])
def test_classical_finds_separate_particles_of_either_polarity(modality):
    mask = separate_disks()
    rng = np.random.default_rng(0)
    bright = (mask > 0) * 0.6 + 0.2 + rng.normal(0, 0.03, mask.shape)
    image = 1.0 - bright if modality == "TEM" else bright
    labels = classical_instances(np.clip(image, 0, 1).astype(np.float32), modality)
    assert matched_f1(labels, mask)[0] == 1.0


def test_classical_splits_two_touching_disks_at_their_neck():
    mask = np.zeros((80, 100), dtype=np.int32)
    for label, c in ((1, 35), (2, 62)):
        rr, cc = disk((40, c), 15, shape=mask.shape)
        mask[rr, cc] = label
    labels = classical_instances(((mask > 0) * 0.7 + 0.15).astype(np.float32), "SEM")
    assert labels.max() == 2 and matched_f1(labels, mask)[0] == 1.0


def test_a_flat_image_has_no_particles():
    assert classical_instances(np.full((32, 32), 0.5, dtype=np.float32), "SEM").max() == 0


def test_reference_methods_are_registered_as_references():
    for name in ("oracle", "classical"):
        cls = get_method(name).cls
        assert cls.role == "reference" and not cls.pretrains


def test_oracle_and_classical_runs_are_the_same_at_every_budget(tmp_path):
    values = {}
    for name in ("oracle", "classical"):
        for budget in ("1", "100%"):
            record = run_one(RunRequest(method=name, budget=budget, profile="smoke", progress=False,
                                        out=tmp_path / f"{name}-{budget.replace('%', 'pct')}"), log=lambda _m: None)
            assert record.method.role == "reference" and record.pretrain.steps == 0
            assert record.selection.finetune_steps_run == 0
            values[(name, budget)] = record.headline.value
    assert values[("oracle", "1")] == values[("oracle", "100%")] < 0.05  # the task's floor: near exact
    assert values[("classical", "1")] == values[("classical", "100%")] > values[("oracle", "1")]


def test_the_oracle_reads_the_truth_at_the_runs_working_resolution():
    """Where a run resamples (real folders of large particles), the oracle's floor includes what the
    resampling loses: large particles survive at the factor, 2 px specks do not, and the labels come
    back in the image's own pixels; at native pixels it is the plain truth through the post-processing."""
    from harness.data.sample import Sample
    from harness.metrics import score_image
    from harness.task import get_task

    shape = (400, 400)
    mask = np.zeros(shape, dtype=np.int32)
    for label, (r, c) in enumerate([(100, 100), (100, 300), (300, 100), (300, 300)], start=1):
        rr, cc = disk((r, c), 60, shape=shape)
        mask[rr, cc] = label
    for label, (r, c) in enumerate([(200, 200), (20, 200), (200, 20), (380, 200)], start=5):
        mask[r:r + 2, c:c + 2] = label  # specks the shrunk image cannot hold
    sample = Sample(id="big", image=(mask > 0).astype(np.float32), mask=mask, pixel_size_nm=None)
    task = get_task("distmap-v3")
    oracle = get_method("oracle").cls({})

    native = oracle.predict(sample, task)
    working = oracle.predict(sample, task, 0.25, 32.0)  # 120 px disks: the second look shrinks further
    assert native.shape == working.shape == shape
    assert len(np.unique(native)) - 1 == 8
    assert len(np.unique(working)) - 1 == 4  # the four disks, whole; the specks are lost to the resampling
    scores = score_image(working, mask, None, 0)
    assert scores.matched == 4 and scores.mean_matched_iou > 0.9
    assert oracle.stated_postprocess(task, 0.25, 130.0, 32.0)["working_scale"] == 0.25
    assert "working_scale" not in oracle.stated_postprocess(task, 1.0, 20.0, None)
