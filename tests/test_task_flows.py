"""Task flows-v1: Cellpose's flow field as the representation. The targets point each particle pixel
towards its own particle's centre, turn with the image (fine-tuning's flips and the 8-view TTA turn the
vectors too), the oracle separates touching particles, and the loss rewards the right maps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from harness.data.sample import Sample
from harness.errors import HarnessError
from harness.evaluation.predict import dihedral_maps, final_look, maps_at
from harness.task import get_task
from harness.task.distmap import IGNORE_VALUE
from harness.task.flows import FLOW_SCALE, flow_instances, flow_loss, flow_targets, truth_flow_maps
from harness.testing import single_thread
from harness.training.runtime import resolve_runtime
from tests.test_task import touching_disks

FLOWS = get_task("flows-v1")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def test_each_particle_pixel_points_towards_its_own_particle():
    mask = touching_disks()
    targets = flow_targets(mask)
    assert targets.shape == (*mask.shape, 3) and targets.dtype == np.float32
    assert np.array_equal(targets[..., 0], (mask > 0).astype(np.float32))
    inside = mask > 0
    assert np.all(targets[~inside, 1:] == 0)
    norms = np.linalg.norm(targets[..., 1:], axis=-1)[inside]
    assert np.mean(np.abs(norms - 1) < 1e-3) > 0.99  # unit vectors (a centre pixel may be 0)
    # independently: the vector from each pixel to its particle's centroid; the flow agrees in direction
    # away from the centre (where the heat path bends around nothing: the particles are disks)
    centres = ndimage.center_of_mass(inside, mask, range(1, mask.max() + 1))
    rr, cc = np.nonzero(inside)
    towards = np.array([centres[label - 1] for label in mask[rr, cc]]) - np.stack([rr, cc], axis=1)
    far = np.linalg.norm(towards, axis=1) > 3
    cosine = (towards[far] * targets[rr[far], cc[far], 1:]).sum(1) / np.linalg.norm(towards[far], axis=1)
    assert np.median(cosine) > 0.95 and np.mean(cosine > 0) > 0.97


def test_the_data_bar_is_ignored_and_an_empty_mask_has_no_flow():
    mask = touching_disks((60, 64))
    targets = flow_targets(mask, databar_rows=5)
    assert np.all(targets[-5:, :, 0] == IGNORE_VALUE) and np.all(targets[:-5, :, 0] != IGNORE_VALUE)
    empty = flow_targets(np.zeros((16, 16), np.int32))
    assert not empty.any()


@pytest.mark.parametrize("quarter,flip", [(q, f) for f in (False, True) for q in range(4)])
def test_turning_the_image_turns_the_targets(quarter, flip):
    """Targets of a turned mask are the turned targets (the task's ``orient``), vectors included; a
    task that turned only the pixels, not the vectors, would be caught (the positive control)."""
    rng = np.random.default_rng(quarter + 4 * flip)
    mask = touching_disks((64, 80))
    mask = np.where(mask > 0, rng.permutation(mask.max() + 1)[mask], 0).astype(np.int32)  # ids in any order
    turned = np.rot90(mask, quarter)
    turned = np.ascontiguousarray(turned[:, ::-1] if flip else turned)
    expected = flow_targets(turned)
    inside = expected[..., 0] > 0
    got = FLOWS.orient(flow_targets(mask), quarter, flip, channel_axis=-1)
    off = np.abs(got[..., 1:] - expected[..., 1:]).max(-1)[inside]
    assert np.mean(off > 0.1) < 0.01  # only the pixel each particle's flows start from may differ
    pixels_only = dataclasses.replace(FLOWS, vector_channels=None).orient(flow_targets(mask), quarter, flip, -1)
    if (quarter, flip) != (0, False):
        assert np.mean(np.abs(pixels_only[..., 1:] - expected[..., 1:]).max(-1)[inside] > 0.1) > 0.3


class TruthNetwork(nn.Module):
    """A 'network' that reads the particle ids off its input (the image holds them as intensities)
    and outputs the true logits of what it sees: equivariant in the physical sense, so the 8-view mean
    must give back the plain maps, with the vectors turned back right."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        _, labels = np.unique(batch[0, 0].numpy(), return_inverse=True)
        targets = flow_targets(labels.reshape(batch.shape[-2:]).astype(np.int32))
        logits = np.concatenate([np.where(targets[..., :1] > 0, 8.0, -8.0), FLOW_SCALE * targets[..., 1:]], -1)
        return torch.from_numpy(np.moveaxis(logits, -1, 0)[None].astype(np.float32))


def test_the_eight_view_mean_turns_the_flows_back():
    mask = touching_disks((48, 56))
    sample = Sample(id="s", image=mask.astype(np.float32), mask=mask, pixel_size_nm=None)
    runtime, net = resolve_runtime("cpu"), TruthNetwork()
    assert final_look(FLOWS) is dihedral_maps
    plain = maps_at(net, sample, runtime, FLOWS)
    mean = dihedral_maps(net, sample, runtime, FLOWS)
    inside = mask > 0
    assert np.mean(np.abs(mean[1:] - plain[1:]).max(0)[inside] > 0.1) < 0.02
    np.testing.assert_allclose(mean[0], plain[0], atol=1e-6)
    wrong = dihedral_maps(net, sample, runtime, dataclasses.replace(FLOWS, vector_channels=None))
    assert np.mean(np.abs(wrong[1:] - plain[1:]).max(0)[inside] > 0.1) > 0.3


def test_the_grid_reads_as_one_call_per_candidate():
    maps = truth_flow_maps(touching_disks())
    maps[1:] += np.random.default_rng(0).normal(0, 0.3, maps[1:].shape).astype(np.float32)
    candidates = FLOWS.candidates()  # every threshold, in the order tuning reads them
    together = list(FLOWS.to_instances_each(maps, candidates))
    for params, labels in zip(candidates, together):
        assert np.array_equal(labels, FLOWS.to_instances(maps, params)), params


def test_no_foreground_gives_no_particles():
    maps = truth_flow_maps(touching_disks((32, 40)))
    maps[0] = 0.0  # nothing above any threshold
    assert not flow_instances(maps).any()
    maps[0, 10:12, 10:12] = 0.9  # four pixels: too few to end at one sink, not an error
    labels = flow_instances(maps, min_size_px=0)
    assert labels.dtype == np.int32 and labels.max() <= 1


def test_bad_maps_and_parameters_are_refused_in_one_line():
    maps = truth_flow_maps(touching_disks((32, 32)))
    with pytest.raises(HarnessError, match=r"\(3, H, W\)"):
        flow_instances(maps[:2])
    with pytest.raises(HarnessError, match="NaN"):
        flow_instances(np.full_like(maps, np.nan))
    with pytest.raises(HarnessError, match="foreground_threshold"):
        flow_instances(maps, foreground_threshold=1.0)
    with pytest.raises(HarnessError, match="flow_threshold"):
        flow_instances(maps, flow_threshold=-0.1)


def test_the_loss_rewards_the_true_maps_and_ignores_padding():
    mask = touching_disks((40, 48))
    targets = torch.from_numpy(flow_targets(mask))[None]
    truth = torch.from_numpy(np.concatenate([np.where(mask[None] > 0, 9.0, -9.0),
                                             FLOW_SCALE * np.moveaxis(flow_targets(mask)[..., 1:], -1, 0)]))[None]
    truth = truth.float()
    assert flow_loss(truth, targets).item() < 0.02
    reversed_flows = truth.clone()
    reversed_flows[:, 1:] *= -1
    assert flow_loss(reversed_flows, targets).item() > 10 * flow_loss(truth, targets).item() + 1
    padded = targets.clone()
    padded[:, :, -8:, 0] = IGNORE_VALUE  # as a crop is padded, the flow channels too (negated by a turn)
    padded[:, :, -8:, 1], padded[:, :, -8:, 2] = IGNORE_VALUE, -IGNORE_VALUE
    wrong_there = truth.clone()
    wrong_there[:, :, :, -8:] = 50.0
    assert flow_loss(wrong_there, padded).item() == pytest.approx(flow_loss(truth, padded).item(), abs=1e-5)
    with pytest.raises(HarnessError, match="logits must be"):
        flow_loss(truth[:, :2], targets)
