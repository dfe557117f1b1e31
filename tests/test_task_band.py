"""Task band-v1: a 2 px boundary band and U-Net's gap-weighted cross-entropy. The weights are checked
against a brute-force computation, the oracle separates touching particles, the loss weighs the gaps,
and a run on a real folder states the task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.draw import disk

from harness.errors import HarnessError
from harness.task import get_task
from harness.task.band import (
    BAND_WIDTH,
    GAP_SIGMA,
    GAP_WEIGHT,
    band_instances,
    band_loss,
    band_targets,
    gap_weights,
)
from harness.task.distmap import IGNORE_VALUE
from harness.task.losses import CLASS_WEIGHTS
from harness.task.targets import BOUNDARY, INTERIOR, make_targets
from harness.testing import single_thread
from tests.test_task import touching_disks

BAND = get_task("band-v1")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def brute_gap_weights(labels: np.ndarray) -> np.ndarray:
    """U-Net's term from every pixel's distance to every particle pixel, the two smallest per pixel."""
    rows, cols = np.indices(labels.shape)
    per_particle = []
    for index in range(1, labels.max() + 1):
        pr, pc = np.nonzero(labels == index)
        d = np.sqrt((rows[..., None] - pr) ** 2 + (cols[..., None] - pc) ** 2).min(axis=-1)
        per_particle.append(d)
    distances = np.sort(np.stack(per_particle), axis=0)
    total = distances[0] + distances[1]
    return GAP_WEIGHT * np.exp(-(total**2) / (2 * GAP_SIGMA**2))


def test_gap_weights_match_a_brute_force_computation():
    mask = np.zeros((60, 70), np.int32)
    for label, (r, c, radius) in enumerate([(20, 18, 9), (20, 37, 9), (45, 30, 8), (12, 60, 5)], start=1):
        rr, cc = disk((r, c), radius, shape=mask.shape)
        mask[rr, cc] = label
    got = gap_weights(mask)
    expected = brute_gap_weights(mask)
    kept = got > 0
    # exact where kept; where cut, the term was under 1e-3 of GAP_WEIGHT
    np.testing.assert_allclose(got[kept], expected[kept], rtol=1e-5)
    assert expected[~kept].max() < 1e-3 * GAP_WEIGHT
    # the gap between the first two disks weighs most; the far side of a lone disk nothing
    assert got[20, 27:29].min() > 0.5 * GAP_WEIGHT
    assert got[0, 0] == 0.0 and not gap_weights(mask * (mask == 4)).any()


def test_targets_hold_a_wider_band_and_the_weights_plus_class_weights():
    mask = touching_disks()
    targets = band_targets(mask, databar_rows=4)
    assert targets.shape == (*mask.shape, 2) and targets.dtype == np.float32
    classes = targets[..., 0]
    np.testing.assert_array_equal(classes, make_targets(mask, 4, width=BAND_WIDTH))
    assert np.all(classes[-4:] == IGNORE_VALUE)
    # wider than 3class-v1's band: a lone disk's boundary ring is 2 px thick
    assert (classes[:-4] == BOUNDARY).sum() > 1.7 * (make_targets(mask, 4) == BOUNDARY).sum()
    valid = classes != IGNORE_VALUE
    base = np.asarray(CLASS_WEIGHTS, np.float32)[classes[valid].astype(int)]
    np.testing.assert_allclose(targets[..., 1][valid], base + gap_weights(mask)[valid], rtol=1e-6)


def test_a_particle_with_a_diagonal_neck_keeps_one_seed():
    """Two lobes joined by a diagonal neck: the band leaves its interior a staircase of pixels that
    touch at corners only, which 4-connected seeds would count as many particles (the control)."""
    mask = np.zeros((48, 48), np.int32)
    for centre in (12, 35):
        rr, cc = disk((centre, centre), 9, shape=mask.shape)
        mask[rr, cc] = 1
    rows, cols = np.indices(mask.shape)
    mask[(np.abs(rows - cols) <= 2) & (rows > 10) & (rows < 37)] = 1
    interior = make_targets(mask, width=BAND_WIDTH) == INTERIOR
    assert ndimage.label(interior)[1] > 1  # 4-connected
    assert band_instances(BAND.truth_maps(mask)).max() == 1


def test_the_grid_reads_as_one_call_per_candidate():
    mask = touching_disks()
    mask[90:93, 2:5] = mask.max() + 1  # a speck under every share but 0, so the shares drop something
    maps = BAND.truth_maps(mask)
    noisy = maps + np.random.default_rng(0).uniform(0, 0.4, maps.shape).astype(np.float32)
    noisy /= noisy.sum(axis=0, keepdims=True)
    candidates = BAND.candidates()
    assert len(candidates) == 20
    counts = set()
    for params, labels in zip(candidates, BAND.to_instances_each(noisy, candidates)):
        assert np.array_equal(labels, BAND.to_instances(noisy, params)), params
        counts.add((params["min_share"] > 0, int(labels.max())))
    assert len({count for share, count in counts if share}) < len(counts)  # the shares changed a count


def test_bad_maps_and_parameters_are_refused_in_one_line():
    maps = BAND.truth_maps(touching_disks((32, 32)))
    with pytest.raises(HarnessError, match=r"\(3, H, W\)"):
        band_instances(maps[:2])
    with pytest.raises(HarnessError, match="NaN"):
        band_instances(np.full_like(maps, np.nan))
    with pytest.raises(HarnessError, match="interior_threshold"):
        band_instances(maps, interior_threshold=1.0)
    with pytest.raises(HarnessError, match="min_share"):
        band_instances(maps, min_share=1.0)
    with pytest.raises(HarnessError, match="min_size_px"):
        band_instances(maps, min_size_px=-1)
    with pytest.raises(HarnessError, match="unknown parameters seed_threshold"):
        next(BAND.to_instances_each(maps, [{"seed_threshold": 0.5}]))
    assert not gap_weights(np.zeros((0, 5), np.int32)).size


@pytest.mark.parametrize("version", ["3class-v1", "band-v1", "distmap-v3", "flows-v1"])
def test_every_task_names_its_foreground(version):
    """The diagnostics read a task's foreground probability through the task: channel 0 of the map
    tasks, one minus background for the class tasks."""
    task = get_task(version)
    mask = touching_disks((40, 48))
    np.testing.assert_allclose(task.foreground(task.truth_maps(mask)), (mask > 0).astype(np.float32), atol=1e-6)


def test_the_loss_weighs_the_gaps_and_ignores_padding():
    mask = touching_disks((48, 64))
    targets = torch.from_numpy(band_targets(mask))[None]
    classes = targets[..., 0].long()
    truth = (F.one_hot(classes, 3).permute(0, 3, 1, 2) * 12.0 - 6.0).float()
    assert band_loss(truth, targets).item() < 0.01
    # the same wrong logits cost more on background in a gap between particles than on background far
    # from all: both pixels have class weight 1, so without the gap term they would cost the same
    background = classes[0].numpy() == 0
    gap = tuple(np.argwhere(background & (gap_weights(mask) > 0.5 * GAP_WEIGHT))[0])
    far = tuple(np.argwhere(background & (gap_weights(mask) == 0))[0])
    costs = []
    for r, c in (gap, far):
        wrong = truth.clone()
        wrong[0, :, r, c] = torch.tensor([0.0, 0.0, 0.0])
        costs.append(band_loss(wrong, targets).item() - band_loss(truth, targets).item())
    # the Dice term moves alike for both; the cross-entropy part differs by log 3 x the weights' difference
    weight = targets[0, ..., 1]
    expected_gap = math.log(3) * (weight[gap] - weight[far]).item() / weight.sum().item()
    assert costs[0] - costs[1] == pytest.approx(expected_gap, rel=0.02)
    assert costs[0] > 2 * costs[1]
    # the formula, computed independently: the weighted mean of -log p(class) plus 1 - soft Dice
    logits = torch.randn(1, 3, *mask.shape, generator=torch.Generator().manual_seed(0))
    log_p = logits.log_softmax(dim=1)[0]
    chosen = torch.gather(log_p, 0, classes[0][None])[0]
    foreground = 1 - logits.softmax(dim=1)[0, 0]
    is_particle = (classes[0] > 0).float()
    dice = 1 - (2 * (foreground * is_particle).sum() + 1) / (foreground.sum() + is_particle.sum() + 1)
    expected = -(weight * chosen).sum() / weight.sum() + dice
    assert band_loss(logits, targets).item() == pytest.approx(expected.item(), rel=1e-5)
    padded = targets.clone()
    padded[:, -8:] = IGNORE_VALUE  # as a crop is padded: both channels
    wrong_there = truth.clone()
    wrong_there[:, :, -8:] = 50.0
    assert band_loss(wrong_there, padded).item() == pytest.approx(band_loss(truth, padded).item(), abs=1e-6)
    with pytest.raises(HarnessError, match="logits must be"):
        band_loss(truth[:, :2], targets)
    with pytest.raises(HarnessError, match="every pixel"):
        band_loss(truth, torch.full_like(targets, IGNORE_VALUE))


def test_the_weights_are_local():
    """A particle far away changes no weight near the others (the reach cut is exact there)."""
    mask = touching_disks((96, 160))
    far = mask.copy()
    rr, cc = disk((48, 150), 6, shape=mask.shape)
    far[rr, cc] = mask.max() + 1
    near_others = np.zeros(mask.shape, bool)
    near_others[:, :110] = True
    np.testing.assert_array_equal(gap_weights(mask)[near_others], gap_weights(far)[near_others])
    assert math.isclose(GAP_SIGMA, 5.0) and GAP_WEIGHT == 10.0  # U-Net's values, which the docs state
