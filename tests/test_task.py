"""Targets, loss and post-processing: touching particles must come back as separate instances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.draw import disk

from harness.errors import HarnessError
from harness.models import SegmentationNet, create_backbone
from harness.task import (
    BACKGROUND,
    BOUNDARY,
    IGNORE_INDEX,
    INTERIOR,
    TASKS,
    get_task,
    make_targets,
    segmentation_loss,
    to_instances,
)

CROSS = ndimage.generate_binary_structure(2, 1)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def touching_disks(shape: tuple[int, int] = (96, 112)) -> np.ndarray:
    """Instance mask: a chain of three touching disks, a touching pair, a lone disk, one cut by the border."""
    mask = np.zeros(shape, dtype=np.int32)
    centres = [(24, 20, 11), (24, 38, 10), (24, 55, 9), (62, 30, 12), (72, 48, 10), (65, 85, 8), (5, 100, 9)]
    for label, (r, c, radius) in enumerate(centres, start=1):
        rr, cc = disk((r, c), radius, shape=shape)
        mask[rr, cc] = label  # later disks overwrite: neighbours share a straight-ish contact line
    return mask


def touching_pairs(mask: np.ndarray) -> set[tuple[int, int]]:
    pairs = set()
    for a, b in ((mask[:, :-1], mask[:, 1:]), (mask[:-1], mask[1:])):
        contact = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(p)) for p in zip(a[contact].tolist(), b[contact].tolist())}
    return pairs


def matched_f1(pred: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """F1 of one-to-one IoU matches above ``threshold`` (unique for IoU > 0.5), and their mean IoU."""
    n_pred, n_true = int(pred.max()), int(truth.max())
    joint = np.zeros((n_pred + 1, n_true + 1), dtype=np.int64)
    np.add.at(joint, (pred.ravel(), truth.ravel()), 1)
    area_pred, area_true = joint.sum(axis=1), joint.sum(axis=0)
    iou = joint / (area_pred[:, None] + area_true[None, :] - joint)
    iou = iou[1:, 1:]
    hits = iou[iou > threshold]
    if n_pred + n_true == 0:
        return 1.0, 1.0
    return 2 * hits.size / (n_pred + n_true), float(hits.mean()) if hits.size else 0.0


def one_hot(targets: np.ndarray) -> np.ndarray:
    return np.stack([(targets == k) for k in (BACKGROUND, INTERIOR, BOUNDARY)]).astype(np.float32)


def test_fixture_really_has_touching_particles():
    mask = touching_disks()
    assert {(1, 2), (2, 3), (4, 5)} <= touching_pairs(mask)


def test_targets_mark_a_one_pixel_band_inside_every_particle_edge():
    mask = touching_disks()
    targets = make_targets(mask)
    assert targets.dtype == np.uint8 and targets.shape == mask.shape
    assert set(np.unique(targets)) == {BACKGROUND, INTERIOR, BOUNDARY}
    assert np.array_equal(targets == BACKGROUND, mask == 0)
    # independent definition: interior = the particle eroded by a cross (border pixels stay inside)
    for label in range(1, mask.max() + 1):
        region = mask == label
        inner = ndimage.binary_erosion(region, CROSS, border_value=1)
        assert np.array_equal(targets[region] == INTERIOR, inner[region]), label
    # no interior pixel touches another particle's interior: seeds cannot merge
    interior_labels = np.where(targets == INTERIOR, mask, 0)
    assert touching_pairs(interior_labels) == set()
    # the particle cut by the image border keeps interior up to the border row
    assert (targets[0][mask[0] == 7] == INTERIOR).any()


def test_wider_boundary_band():
    mask = touching_disks()
    thin, wide = make_targets(mask, width=1), make_targets(mask, width=2)
    assert (wide == BOUNDARY).sum() > 1.6 * (thin == BOUNDARY).sum()
    assert ((thin == BOUNDARY) <= (wide == BOUNDARY)).all()
    for label in range(1, mask.max() + 1):
        region = mask == label
        inner = ndimage.binary_erosion(region, CROSS, iterations=2, border_value=1)
        assert np.array_equal(wide[region] == INTERIOR, inner[region]), label


def test_thin_particles_keep_a_seed_and_stay_apart():
    mask = np.zeros((20, 20), dtype=np.int32)
    mask[4:6, 2:12] = 1  # two 2 px wide bars (no pixel survives erosion) ...
    mask[6:8, 8:18] = 2  # ... in contact along columns 8-11
    mask[12, 4:10] = 3  # a 1 px line touching nothing
    targets = make_targets(mask)
    for label in (1, 2, 3):
        assert (targets[mask == label] == INTERIOR).any(), label
    # where the bars touch they stay boundary, so their interiors (the seeds) do not touch
    assert (targets[5:7, 8:12] == BOUNDARY).all()
    assert touching_pairs(np.where(targets == INTERIOR, mask, 0)) == set()
    assert matched_f1(to_instances(one_hot(targets), min_size_px=0), mask) == (1.0, 1.0)


def test_databar_rows_are_ignored_and_nothing_else_changes():
    mask = touching_disks()
    plain = make_targets(mask)
    barred = make_targets(mask, databar_rows=10)
    assert (barred[-10:] == IGNORE_INDEX).all()
    assert np.array_equal(barred[:-10], plain[:-10])
    assert np.array_equal(make_targets(mask, databar_rows=0), plain)


@pytest.mark.parametrize(
    ("mask", "kwargs", "message"),
    [
        (np.zeros((2, 4, 4), np.int32), {}, "2-D"),
        (np.zeros((4, 4), np.float32), {}, "integer"),
        (np.full((4, 4), -1, np.int32), {}, "negative"),
        (np.zeros((4, 4), np.int32), {"databar_rows": 5}, "databar_rows=5"),
        (np.zeros((4, 4), np.int32), {"width": 0}, "width"),
    ],
)
def test_bad_masks_are_reported(mask: np.ndarray, kwargs: dict, message: str):
    with pytest.raises(HarnessError, match=message):
        make_targets(mask, **kwargs)


@pytest.mark.parametrize("width", [1, 2])
def test_perfect_probabilities_give_back_the_touching_instances(width: int):
    mask = touching_disks()
    labels = to_instances(one_hot(make_targets(mask, width=width)))
    assert labels.dtype == np.int32
    f1, mean_iou = matched_f1(labels, mask)
    assert f1 == 1.0
    assert mean_iou > 0.95
    assert np.array_equal(np.unique(labels), np.arange(mask.max() + 1))


def test_blurred_probabilities_still_separate_touching_particles():
    mask = touching_disks()
    probabilities = ndimage.gaussian_filter(one_hot(make_targets(mask)), sigma=(0, 0.7, 0.7))
    rng = np.random.default_rng(0)
    probabilities = probabilities + rng.uniform(0, 0.05, probabilities.shape).astype(np.float32)
    probabilities /= probabilities.sum(axis=0, keepdims=True)
    f1, mean_iou = matched_f1(to_instances(probabilities), mask)
    assert f1 == 1.0 and mean_iou > 0.9


def test_merged_prediction_is_not_split_without_a_boundary():
    # sanity check that the test can fail: foreground without the boundary class merges neighbours
    mask = touching_disks()
    targets = make_targets(mask)
    targets[targets == BOUNDARY] = INTERIOR
    f1, _ = matched_f1(to_instances(one_hot(targets)), mask)
    assert f1 < 0.8


def test_instances_are_consecutive_deterministic_and_small_ones_dropped():
    mask = touching_disks()
    mask[90:92, 2:4] = 8  # a 4 px speck
    probabilities = one_hot(make_targets(mask))
    first = to_instances(probabilities, min_size_px=5)
    again = to_instances(probabilities.copy(), min_size_px=5)
    assert np.array_equal(first, again)
    assert np.array_equal(np.unique(first), np.arange(8))  # 7 disks, speck gone
    assert (first[90:92, 2:4] == 0).all()
    assert to_instances(probabilities, min_size_px=0).max() == 8
    # ids follow raster order of the first seed pixel
    firsts = [np.flatnonzero(first.ravel() == k)[0] for k in range(1, 8)]
    assert firsts == sorted(firsts)


def test_nothing_confident_gives_an_empty_label_image():
    probabilities = np.full((3, 16, 24), 1 / 3, dtype=np.float32)
    labels = to_instances(probabilities)
    assert labels.shape == (16, 24) and labels.dtype == np.int32 and labels.max() == 0


@pytest.mark.parametrize(
    ("probabilities", "kwargs", "message"),
    [
        (np.zeros((2, 8, 8), np.float32), {}, r"\(3, H, W\)"),
        (np.zeros((3, 8, 8), np.uint8), {}, "floats"),
        (np.full((3, 8, 8), np.nan, np.float32), {}, "NaN"),
        (np.zeros((3, 8, 8), np.float32), {"interior_threshold": 1.5}, "interior_threshold"),
        (np.zeros((3, 8, 8), np.float32), {"min_size_px": -1}, "min_size_px"),
    ],
)
def test_bad_probabilities_are_reported(probabilities: np.ndarray, kwargs: dict, message: str):
    with pytest.raises(HarnessError, match=message):
        to_instances(probabilities, **kwargs)


def _logits_for(targets: np.ndarray, confidence: float = 8.0) -> torch.Tensor:
    valid = np.where(targets == IGNORE_INDEX, BACKGROUND, targets)
    return torch.from_numpy(one_hot(valid) * confidence)[None]


def test_loss_is_low_for_right_and_high_for_wrong_predictions():
    targets = make_targets(touching_disks())
    truth = torch.from_numpy(targets)[None].long()
    right = segmentation_loss(_logits_for(targets), truth)
    flat = segmentation_loss(torch.zeros(1, 3, *targets.shape), truth)
    wrong = segmentation_loss(_logits_for(np.zeros_like(targets)), truth)
    assert right < 0.01 < flat < wrong
    assert right.ndim == 0


def test_boundary_mistakes_cost_more_than_interior_mistakes():
    targets = make_targets(touching_disks())
    truth = torch.from_numpy(targets)[None].long()
    n = int(min((targets == BOUNDARY).sum(), (targets == INTERIOR).sum()))
    losses = []
    for cls in (INTERIOR, BOUNDARY):
        predicted = targets.copy()
        rows, cols = np.nonzero(targets == cls)
        predicted[rows[:n], cols[:n]] = BACKGROUND  # the same number of pixels missed
        losses.append(segmentation_loss(_logits_for(predicted), truth, dice_weight=0.0))
    assert losses[1] > 2 * losses[0]


def test_loss_ignores_the_databar_rows():
    targets = make_targets(touching_disks(), databar_rows=12)
    truth = torch.from_numpy(targets)[None].long()
    logits = torch.randn(1, 3, *targets.shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = segmentation_loss(logits, truth)
    loss.backward()
    assert torch.isfinite(loss)
    assert (logits.grad[..., -12:, :] == 0).all()
    assert (logits.grad[..., :-12, :] != 0).any()
    # whatever the network says in the data bar, the loss does not move
    changed = logits.detach().clone()
    changed[..., -12:, :] = torch.randn(1, 3, 12, targets.shape[1]) * 10
    assert segmentation_loss(changed, truth) == pytest.approx(loss.item(), rel=1e-6)


def test_loss_rejects_mismatched_shapes():
    with pytest.raises(HarnessError, match="does not match"):
        segmentation_loss(torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, 9, dtype=torch.long))
    with pytest.raises(HarnessError, match=r"\(B, 3, H, W\)"):
        segmentation_loss(torch.zeros(2, 4, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))


def test_a_few_steps_on_one_batch_lower_the_loss():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    masks = [touching_disks((64, 64)), touching_disks((64, 64))[::-1].copy()]
    images = np.stack([(m > 0) * 0.6 + 0.2 + rng.normal(0, 0.05, m.shape) for m in masks]).astype(np.float32)
    y = torch.from_numpy(np.stack([make_targets(m, databar_rows=4) for m in masks])).long()
    losses = train_on_one_batch(SegmentationNet(create_backbone("test_convnext")), images, y, segmentation_loss)
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.6 * losses[0], losses


def train_on_one_batch(net, images: np.ndarray, targets: torch.Tensor, loss_fn, steps: int = 25) -> list[float]:
    """AdamW steps of ``net`` on one fixed batch; the losses of every step."""
    x = torch.from_numpy(images)[:, None]
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = loss_fn(net(x), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_a_foreground_blob_without_confident_interior_is_still_a_particle():
    from harness.task.postprocess import to_instances

    probabilities = np.zeros((3, 40, 40), dtype=np.float32)
    probabilities[0] = 1.0
    # particle A: confident interior; particle B: only "boundary" (interior prob 0.3 everywhere)
    probabilities[:, 5:15, 5:15] = np.array([0.0, 0.9, 0.1])[:, None, None]
    probabilities[:, 25:35, 25:35] = np.array([0.1, 0.3, 0.6])[:, None, None]
    labels = to_instances(probabilities)
    assert labels.max() == 2
    assert (labels[5:15, 5:15] == 1).all() and (labels[25:35, 25:35] == 2).all()


@pytest.mark.parametrize("version", sorted(TASKS))
def test_every_task_s_oracle_separates_touching_particles(version: str):
    """True maps through each task version's own reading give back the touching particles, ids 1..N in
    raster order of their first pixel, as every task numbers them."""
    task = get_task(version)
    mask = touching_disks()
    labels = task.to_instances(task.truth_maps(mask))
    assert labels.dtype == np.int32 and labels.max() == mask.max()
    f1, iou = matched_f1(labels, mask)
    assert f1 == 1.0 and iou > 0.9
    ids, first = np.unique(labels.ravel(), return_index=True)
    assert list(ids[1:][np.argsort(first[1:])]) == list(range(1, labels.max() + 1))


@pytest.mark.parametrize(("version", "tuned", "candidates"), [
    ("flows-v1", {"foreground_threshold", "flow_threshold", "min_share"}, 48),
    ("band-v1", {"interior_threshold", "min_share"}, 20),
])
def test_a_run_on_a_real_folder_trains_tunes_and_states_its_task(tmp_path, version: str, tuned: set[str],
                                                                  candidates: int):
    """The whole road on real figure crops (emps-mini: a folder, tuned on validation, read with 8 views)
    for the task versions tried on EMPS beside the default."""
    import json
    from pathlib import Path

    from click.testing import CliRunner

    from harness.cli import main

    out = tmp_path / "run"
    emps = Path(__file__).parent / "data" / "emps-mini"
    result = CliRunner().invoke(main, ["run", "--profile", "smoke", "--quiet", "--method", "none", "--budget", "100%",
                                       "--dataset", str(emps), "--task-version", version, "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "record.json").read_text())
    assert record["settings"]["task"] == record["postprocess"]["task"] == version
    assert set(record["postprocess"]["params"]) == tuned
    assert record["postprocess"]["candidates"] == len(get_task(version).candidates()) == candidates
    assert record["headline"]["n_images"] > 0
