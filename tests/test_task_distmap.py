"""Task v2: the distance-map targets are what they claim, the oracle separates touching particles,
the loss rewards the right maps, and the post-processing thresholds are tuned on validation only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from harness.errors import HarnessError
from harness.models import SegmentationNet, create_backbone
from harness.task import DEFAULT_TASK, TASKS, get_task
from harness.task.distmap import IGNORE_VALUE, distance_instances, distance_loss, distance_targets, truth_maps
from harness.testing import single_thread
from tests.test_task import matched_f1, touching_disks, train_on_one_batch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def brute_force_distance(mask: np.ndarray) -> np.ndarray:
    """Independent definition: per pixel, the Euclidean distance to the nearest in-image pixel of
    another label, over its particle's maximum; by exhaustive search."""
    out = np.zeros(mask.shape, dtype=np.float64)
    rr, cc = np.indices(mask.shape)
    for label in range(1, mask.max() + 1):
        own = mask == label
        if not own.any():
            continue
        other = np.stack([rr[~own], cc[~own]], axis=1)
        pixels = np.stack([rr[own], cc[own]], axis=1)
        d = np.sqrt(((pixels[:, None, :] - other[None, :, :]) ** 2).sum(-1)).min(axis=1)
        out[own] = d / d.max()
    return out


def test_distance_targets_match_an_exhaustive_computation():
    mask = touching_disks((40, 48))[:, :]
    targets = distance_targets(mask)
    assert targets.shape == (*mask.shape, 2) and targets.dtype == np.float32
    assert np.array_equal(targets[..., 0], (mask > 0).astype(np.float32))
    np.testing.assert_allclose(targets[..., 1], brute_force_distance(mask), atol=1e-6)
    # every particle peaks at exactly 1, and touching particles meet at low values
    for label in np.unique(mask[mask > 0]):
        assert targets[..., 1][mask == label].max() == pytest.approx(1.0)


def test_the_image_border_is_not_an_edge():
    mask = np.zeros((20, 20), dtype=np.int32)
    mask[0:6, 5:15] = 1  # cut by the top border
    distance = distance_targets(mask)[..., 1]
    # the row on the border is as far from the particle's edge as the particle allows, not 1 px
    assert distance[0, 10] == pytest.approx(1.0)
    assert distance[5, 10] < distance[0, 10]


def test_databar_rows_are_ignored_in_the_targets_and_the_loss():
    mask = touching_disks((64, 64))
    targets = distance_targets(mask, databar_rows=10)
    assert (targets[-10:, :, 0] == IGNORE_VALUE).all()
    logits = torch.zeros(1, 2, 64, 64)
    base = distance_loss(logits, torch.from_numpy(targets)[None])
    changed = logits.clone()
    changed[..., -10:, :] = 7.0  # anything in the ignored rows counts for nothing
    assert distance_loss(changed, torch.from_numpy(targets)[None]).item() == pytest.approx(base.item(), rel=1e-6)


def test_the_loss_prefers_the_true_maps():
    mask = touching_disks((64, 64))
    targets = torch.from_numpy(distance_targets(mask))[None]
    truth = torch.from_numpy(truth_maps(mask))[None].clamp(1e-4, 1 - 1e-4)
    right = distance_loss(torch.logit(truth), targets)
    flat = distance_loss(torch.zeros(1, 2, 64, 64), targets)
    assert right < 0.5 * flat


def test_the_oracle_separates_touching_particles_exactly():
    mask = touching_disks()
    labels = distance_instances(truth_maps(mask))
    assert matched_f1(labels, mask)[0] == 1.0


def test_touching_disks_are_split_by_the_distance_map_not_merged_by_the_foreground():
    mask = touching_disks()
    maps = truth_maps(mask)
    merged = distance_instances(np.stack([maps[0], np.full_like(maps[1], 0.9)]))  # no necks: one seed per blob
    assert merged.max() < mask.max()
    assert distance_instances(maps).max() == mask.max()


def test_h_maxima_seeds_merge_shallow_peaks_and_keep_touching_particles_apart():
    # one rectangle whose map has two equal peaks 0.15 above the dip between them, the dip below the
    # seed threshold: threshold seeds split it, a dynamic above 0.15 does not, one below does
    block = np.zeros((60, 100), dtype=np.int32)
    block[10:50, 10:90] = 1
    columns = np.indices(block.shape)[1]
    distance = np.where(block > 0, 0.6 - 0.15 * np.exp(-(((columns - 50) / 5.0) ** 2)), 0.0)
    maps = np.stack([(block > 0).astype(np.float32), distance.astype(np.float32)])
    assert distance_instances(maps, smooth_sigma=0).max() == 2
    assert distance_instances(maps, smooth_sigma=0, seed_dynamic=0.1).max() == 2
    assert distance_instances(maps, smooth_sigma=0, seed_dynamic=0.2).max() == 1
    # touching particles' normalised maps dip to a low neck: they stay apart at any of the grid's dynamics
    mask = touching_disks()
    for dynamic in (0.1, 0.2, 0.3):
        assert matched_f1(distance_instances(truth_maps(mask), seed_dynamic=dynamic), mask)[0] == 1.0


@pytest.mark.parametrize("kwargs", [{"seed_threshold": 0.0}, {"foreground_threshold": 1.0}, {"smooth_sigma": -1},
                                    {"seed_dynamic": -0.1}, {"seed_dynamic": 1.0}])
def test_bad_postprocessing_parameters_are_refused(kwargs):
    with pytest.raises(HarnessError):
        distance_instances(truth_maps(touching_disks()), **kwargs)


def test_maps_must_be_finite():
    maps = truth_maps(touching_disks())
    maps[1, 3, 3] = np.nan
    with pytest.raises(HarnessError, match="NaN"):
        distance_instances(maps)


def test_a_few_steps_on_one_batch_lower_the_loss():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    masks = [touching_disks((64, 64)), touching_disks((64, 64))[::-1].copy()]
    images = np.stack([(m > 0) * 0.6 + 0.2 + rng.normal(0, 0.05, m.shape) for m in masks]).astype(np.float32)
    y = torch.from_numpy(np.stack([distance_targets(m, databar_rows=4) for m in masks]))
    net = SegmentationNet(create_backbone("test_convnext"), num_outputs=2)
    losses = train_on_one_batch(net, images, y, distance_loss)
    assert np.mean(losses[-3:]) < 0.6 * losses[0], losses


def test_particles_under_a_share_of_the_largest_are_dropped_and_the_rest_renumbered():
    """Specks and shards beside a micrograph's real particles: areas 1257, 78 (6%) and 28 (2%) px."""
    mask = np.zeros((80, 120), dtype=np.int32)
    yy, xx = np.indices(mask.shape)
    mask[(yy - 40) ** 2 + (xx - 30) ** 2 < 20 ** 2] = 1
    mask[(yy - 10) ** 2 + (xx - 100) ** 2 < 5 ** 2] = 2
    mask[(yy - 60) ** 2 + (xx - 100) ** 2 < 3 ** 2] = 3
    sizes = np.bincount(mask.ravel())[1:]
    maps = truth_maps(mask)
    assert distance_instances(maps).max() == 3
    kept = distance_instances(maps, min_share=0.05)
    assert kept.max() == 2 and sorted(np.bincount(kept.ravel())[1:]) == sorted(sizes[:2])
    only = distance_instances(maps, min_share=0.1)
    assert only.max() == 1 and np.array_equal(only > 0, mask == 1)
    # the largest always stays, however small; and the share acts beside the absolute minimum
    assert distance_instances(maps, min_share=0.99).max() == 1
    assert distance_instances(maps, min_size_px=50, min_share=0.01).max() == 2
    for bad in (-0.1, 1.0):
        with pytest.raises(HarnessError, match="min_share"):
            distance_instances(maps, min_share=bad)


def test_distmap_v3_trains_as_v2_and_reads_its_maps_differently():
    """Same network, targets and loss, and defaults that are v2's rule (so model selection, which
    reads the defaults, picks the same step); a grid that contains v2's; test-time augmentation."""
    v2, v3 = get_task("distmap-v2"), get_task("distmap-v3")
    for part in ("num_outputs", "targets", "pad_value", "loss", "maps", "truth_maps", "instances"):
        assert getattr(v3, part) is getattr(v2, part), part
    maps = truth_maps(touching_disks())
    assert np.array_equal(v3.to_instances(maps), v2.to_instances(maps))
    v2_rows = {tuple(sorted(c.items())) for c in v2.candidates()}
    v3_rows = {tuple(sorted((k, v) for k, v in c.items() if k in v2.defaults))
               for c in v3.candidates() if c["seed_dynamic"] == 0 and c["min_share"] == 0}
    assert v3_rows == v2_rows and len(v3.candidates()) == 16 * len(v2.candidates())
    assert v3.tta and not v2.tta


def test_the_task_registry():
    assert DEFAULT_TASK == "distmap-v3"
    assert set(TASKS) == {"3class-v1", "band-v1", "distmap-v2", "distmap-v3", "flows-v1"}
    task = get_task(DEFAULT_TASK)
    candidates = task.candidates()
    assert candidates[0] == dict(task.defaults)  # the defaults come first and win ties
    assert len(candidates) == len({tuple(sorted(c.items())) for c in candidates})
    with pytest.raises(HarnessError, match="unknown task version"):
        get_task("5class-v9")


def one_by_one(maps: np.ndarray, seed_threshold: float, foreground_threshold: float, smooth_sigma: float = 1.0,
               min_size_px: int = 4, seed_dynamic: float = 0.0, min_share: float = 0.0) -> np.ndarray:
    """Independent reading of one parameter set, every stage from scratch and written out plainly:
    skimage's h-maxima seeds (its transform also keeps both of two equal peaks), watershed, one filter
    on max(minimum area, share of the largest), raster-order renumbering."""
    from skimage import morphology, segmentation

    distance = ndimage.gaussian_filter(maps[1].astype(np.float32), smooth_sigma) if smooth_sigma else maps[1]
    foreground = maps[0] > foreground_threshold
    if seed_dynamic:
        tops = morphology.local_maxima(morphology.reconstruction(distance - seed_dynamic, distance)) & foreground
        peaks, _ = ndimage.label(tops)
        high = [i for i in range(1, peaks.max() + 1) if distance[peaks == i].max() > seed_threshold]
        seeds, _ = ndimage.label(np.isin(peaks, high))
    else:
        seeds, _ = ndimage.label((distance > seed_threshold) & foreground)
    blobs, _ = ndimage.label(foreground)
    orphans, _ = ndimage.label(foreground & ~np.isin(blobs, np.unique(blobs[seeds > 0])))
    seeds = np.where(orphans > 0, orphans + seeds.max(), seeds)
    labels = segmentation.watershed(-distance, seeds, mask=foreground | (seeds > 0)) if seeds.any() else seeds
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    labels[(sizes < max(min_size_px, min_share * sizes.max()))[labels]] = 0
    order = [v for v in dict.fromkeys(labels.ravel().tolist()) if v]  # raster order of first pixels
    out = np.zeros(labels.shape, dtype=np.int32)
    for new_id, old_id in enumerate(order, start=1):
        out[labels == old_id] = new_id
    return out


def test_a_grid_read_at_once_equals_each_candidate_read_on_its_own():
    """Tuning reads the whole grid per image through the task's grid reader, which computes each
    stage once for the candidates that share it; every candidate's labels must be the ones a plain
    reading of that candidate alone gives, on true maps and on noisy, network-like ones."""
    rng = np.random.default_rng(3)
    task = get_task("distmap-v3")
    candidates = task.candidates()
    assert len(candidates) == 240 and task.instances_grid is not None
    mask = touching_disks((72, 72))
    mask[60:70, 4:8] = mask.max() + 1  # a small shard beside them, for the share
    clean = truth_maps(mask)
    noisy = np.clip(clean + rng.normal(0, 0.12, clean.shape), 0, 1).astype(np.float32)
    # smooth random fields: blobs of every size and peaks of every height, so each threshold matters
    fields = np.stack([ndimage.gaussian_filter(rng.normal(size=(96, 96)), 3) for _ in range(2)])
    fields = ((fields - fields.min(axis=(1, 2), keepdims=True)) / np.ptp(fields, axis=(1, 2), keepdims=True))
    for maps in (clean, noisy, fields.astype(np.float32)):
        together = list(task.to_instances_each(maps, candidates))
        for params, labels in zip(candidates, together, strict=True):
            alone = one_by_one(maps, **{**task.defaults, **params})
            assert labels.dtype == np.int32 and np.array_equal(labels, alone), params
            assert np.array_equal(labels, task.to_instances(maps, params)), params
    # the readings are the callers' own arrays
    together[0][:] = 0
    assert next(task.to_instances_each(noisy, candidates[:1])).any()
