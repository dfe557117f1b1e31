"""Reference rows every table carries: where the task's floor and a no-learning user stand.

- ``oracle``: the ground-truth masks turned into the task's own maps and put through the task's
  post-processing (default thresholds). The best any network could score: what remains is the
  post-processing's own error.
- ``classical``: no learning at all. Gaussian smoothing, an Otsu threshold (particles bright in
  SEM, dark in TEM, the minority side when the modality is unknown), holes filled, then a
  distance-transform watershed seeded at the regional maxima. What a lab gets without a model.

Neither trains or looks at the label budget, so each gives the same number at every budget; they
are computed on the same test split as the methods, and tables show them unranked.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import h_maxima

from harness.data.intensity import to_unit_float
from harness.data.sample import Sample
from harness.errors import HarnessError
from harness.methods.base import SSLMethod
from harness.plugins.hookspecs import provides_methods
from harness.task import InstanceTask, seeded_watershed

MIN_SIZE_PX = 4
SEED_HEIGHT_PX = 1.0  # a distance maximum must rise this far above its surroundings to seed a particle


class ReferenceMethod(SSLMethod):
    """A row that is computed, not trained: ``predict`` labels an image directly."""

    pretrains = False
    role: ClassVar[str] = "reference"
    transfers = "nothing (no network)"

    def predict(self, sample: Sample, task: InstanceTask) -> np.ndarray:
        raise NotImplementedError


class Oracle(ReferenceMethod):
    """Reference: ground-truth masks through the task's own maps and post-processing (the floor)."""

    name = "oracle"

    def predict(self, sample: Sample, task: InstanceTask) -> np.ndarray:
        if sample.mask is None:
            raise HarnessError(f"oracle: {sample.id} has no mask")
        rows = sample.valid_rows
        labels = np.zeros(sample.image.shape[:2], dtype=np.int32)
        labels[:rows] = task.to_instances(task.truth_maps(np.asarray(sample.mask)[:rows]))
        return labels


def classical_instances(image: np.ndarray, modality: str | None) -> np.ndarray:
    """Otsu + distance-transform watershed on a [0, 1] image; int32 labels, ids in raster order."""
    smooth = ndimage.gaussian_filter(image.astype(np.float32), 1.0)
    if float(smooth.max() - smooth.min()) < 1e-6:
        return np.zeros(image.shape, dtype=np.int32)
    threshold = threshold_otsu(smooth)
    bright = smooth > threshold
    if modality == "SEM":
        foreground = bright
    elif modality == "TEM":
        foreground = ~bright
    else:  # particles are the minority phase
        foreground = bright if bright.mean() <= 0.5 else ~bright
    foreground = ndimage.binary_fill_holes(foreground)
    distance = ndimage.distance_transform_edt(foreground).astype(np.float32)
    seeds, _ = ndimage.label(h_maxima(ndimage.gaussian_filter(distance, 1.0), SEED_HEIGHT_PX))
    return seeded_watershed(-distance, seeds, foreground, MIN_SIZE_PX)


class Classical(ReferenceMethod):
    """Reference: no learning; Otsu threshold + distance-transform watershed."""

    name = "classical"

    def predict(self, sample: Sample, task: InstanceTask) -> np.ndarray:
        rows = sample.valid_rows
        image = to_unit_float(sample.image, sample.databar_rows)[:rows]
        labels = np.zeros(sample.image.shape[:2], dtype=np.int32)
        labels[:rows] = classical_instances(image, sample.modality)
        return labels


harness_methods = provides_methods(Oracle, Classical)
