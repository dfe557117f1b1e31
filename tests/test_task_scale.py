"""The working resolution: chosen from the budget's masks, applied to images and masks alike, and
undone on predictions so that scoring happens in the original pixels."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from harness.errors import HarnessError
from harness.task.scale import median_diameter_px, resample_image, resample_labels, restore_labels, working_scale


def disks(radius: int, shape=(200, 200)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.int32)
    for label, (r, c) in enumerate([(50, 50), (50, 150), (150, 100)], start=1):
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
