"""The working resolution: chosen from the budget's masks, applied to images and masks alike, and
undone on predictions so that scoring happens in the original pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.draw import disk

from harness.data.sample import Sample
from harness.errors import HarnessError
from harness.evaluation.predict import image_scale
from harness.task import get_task
from harness.task.scale import (
    Resolution,
    budget_resolution,
    median_diameter_px,
    resample_image,
    resample_labels,
    restore_labels,
    working_scale,
)
from harness.training.runtime import resolve_runtime


def disks(radius: int, shape=(200, 200)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.int32)
    k = shape[0] / 200
    for label, (r, c) in enumerate([(50 * k, 50 * k), (50 * k, 150 * k), (150 * k, 100 * k)], start=1):
        rr, cc = disk((r, c), radius, shape=shape)
        mask[rr, cc] = label
    return mask


def test_median_diameter_is_the_equivalent_diameter():
    mask = disks(20)
    area = (mask == 1).sum()
    assert median_diameter_px([mask]) == pytest.approx(2 * np.sqrt(area / np.pi))
    assert median_diameter_px([np.zeros((5, 5), dtype=np.int32)]) is None


def test_small_particles_keep_native_pixels_and_large_ones_are_shrunk_to_the_target():
    assert working_scale(30.0, 48, 32) == 1.0 and working_scale(None, 48, 32) == 1.0
    assert working_scale(128.0, 48, 32) == pytest.approx(0.25)
    with pytest.raises(HarnessError):
        working_scale(100.0, 30, 40)


def test_resampled_masks_keep_their_particles_and_the_diameter_lands_on_the_target():
    mask = disks(40)
    scale = working_scale(median_diameter_px([mask]), 48, 32)
    small = resample_labels(mask, scale)
    assert small.dtype == mask.dtype and set(np.unique(small)) == set(np.unique(mask))
    assert median_diameter_px([small]) == pytest.approx(32, rel=0.05)
    image = resample_image((mask > 0).astype(np.float32), scale)
    assert image.shape == small.shape and 0 <= image.min() and image.max() <= 1


def test_restored_labels_are_back_in_the_original_pixels():
    mask = disks(40)
    small = resample_labels(mask, 0.25)
    back = restore_labels(small, mask.shape)
    assert back.shape == mask.shape
    agreement = (back == mask).mean()
    assert agreement > 0.97  # only edge pixels of a 4x round trip differ
    assert restore_labels(mask, mask.shape) is mask


def test_per_image_factors_engage_only_for_budgets_of_large_particles():
    assert not budget_resolution(30.0, 48, 32, per_image=True).per_image  # synthetic data: untouched
    large = budget_resolution(100.0, 48, 32, per_image=True)
    assert large.per_image and large.base == pytest.approx(0.32)
    assert large.for_diameter(20.0) == 1.0 and large.for_diameter(256.0) == pytest.approx(0.125)
    assert large.for_diameter(None) == large.base
    assert not budget_resolution(100.0, 48, 32, per_image=False).per_image


class ThresholdNet(torch.nn.Module):
    """A stand-in network that sees every bright particle whole at any factor: its logits are the
    task's true maps of the thresholded image (so a ladder step finds the particles' real size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels, _ = ndimage.label(x[0, 0].numpy() > 0.5)
        maps = np.clip(get_task("distmap-v2").truth_maps(labels.astype(np.int32)), 1e-4, 1 - 1e-4)
        return torch.logit(torch.from_numpy(maps))[None]


@pytest.mark.parametrize(("radius", "expected"), [(64, 0.25), (10, 1.0)])
def test_the_ladder_finds_each_images_factor_from_the_particles_the_network_sees(radius, expected):
    """Diameter 128 px fits the 32 px view at 1/4; diameter 20 px already fits at native pixels."""
    mask = disks(radius, shape=(400, 400)) if radius > 20 else disks(radius)
    image = np.where(mask > 0, 200, 20).astype(np.uint8)
    sample = Sample(id="x", image=image, mask=None, pixel_size_nm=None)
    resolution = budget_resolution(100.0, 48, 32, per_image=True)
    scale = image_scale(ThresholdNet(), sample, resolve_runtime("cpu"), get_task("distmap-v2"), resolution)
    assert scale == pytest.approx(expected, rel=0.1)
    assert image_scale(ThresholdNet(), sample, resolve_runtime("cpu"), get_task("distmap-v2"),
                       Resolution(base=0.5)) == 0.5  # one factor for all: no look needed
