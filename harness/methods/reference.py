"""Reference rows every table carries: where the task's floor and a no-learning user stand.

- ``oracle``: the ground-truth masks turned into the task's own maps and put through the task's
  post-processing (default thresholds), at the task's working resolution: where the run resamples
  (:mod:`harness.task.scale`, real folders of large particles), each image's true masks at the
  factor its second look would reach from its true particles, as fine-tuning shows them, mapped
  back to the image's pixels. The best any network could score: what remains is the error of the
  post-processing and of the resampling.
- ``classical``: no learning at all. Gaussian smoothing, an Otsu threshold (particles bright in
  SEM, dark in TEM, the minority side when the modality is unknown), holes filled, then a
  distance-transform watershed seeded at the regional maxima, at native pixels with fixed
  parameters (nothing is tuned). What a lab gets without a model.

Neither trains; where the run does not resample (every embedded dataset) neither depends on the
label budget, so each gives the same number at every budget. Both are computed on the same test
split as the methods, with particles on printed marks dropped as for the methods
(:mod:`harness.data.printed`), and tables show them unranked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import h_maxima

from harness.data.intensity import to_unit_float
from harness.data.sample import Sample
from harness.errors import HarnessError
from harness.methods.base import SSLMethod
from harness.plugins.hookspecs import Role, provides_methods
from harness.task import InstanceTask, seeded_watershed
from harness.task.scale import labels_from_instances, resample_labels, second_look_scale

MIN_SIZE_PX = 4
SEED_HEIGHT_PX = 1.0  # a distance maximum must rise this far above its surroundings to seed a particle


class ReferenceMethod(SSLMethod, ABC):
    """A row that is computed, not trained: ``predict`` labels an image directly."""

    pretrains = False
    role: ClassVar[Role] = "reference"
    transfers = "nothing (no network)"

    @abstractmethod
    def predict(self, sample: Sample, task: InstanceTask, scale: float = 1.0,
                second_look_px: float | None = None) -> np.ndarray:
        """Instance labels of the whole image in its own pixels (data bar rows 0), for a run whose
        task reads images at factor ``scale`` with each image's second look aimed at ``second_look_px``."""

    def stated_postprocess(self, task: InstanceTask, scale: float, diameter_px: float | None,
                           second_look_px: float | None) -> dict[str, Any]:
        """What the record's ``postprocess`` says this row did: the task's default post-processing, and
        where the run resamples, its working resolution (a row with a rule of its own says so instead)."""
        stated: dict[str, Any] = {"task": task.version, "params": dict(task.defaults)}
        if scale < 1.0:
            stated |= {"working_scale": scale, "budget_median_diameter_px": diameter_px,
                       "second_look_px": second_look_px}
        return stated


class Oracle(ReferenceMethod):
    """Reference: ground-truth masks through the task's own maps, resolution and post-processing (the floor)."""

    name = "oracle"

    def predict(self, sample: Sample, task: InstanceTask, scale: float = 1.0,
                second_look_px: float | None = None) -> np.ndarray:
        if sample.mask is None:
            raise HarnessError(f"oracle: {sample.id} has no mask")
        mask = np.asarray(sample.mask)[: sample.valid_rows]
        if second_look_px is not None:  # the factor fine-tuning shows this image at
            scale = second_look_scale(mask, scale, second_look_px)
        return labels_from_instances(task.to_instances(task.truth_maps(resample_labels(mask, scale))), sample)


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

    def predict(self, sample: Sample, task: InstanceTask, scale: float = 1.0,
                second_look_px: float | None = None) -> np.ndarray:
        image = to_unit_float(sample.image, sample.databar_rows)[: sample.valid_rows]
        # at native pixels: the classical pipeline has no model's view to fit
        return labels_from_instances(classical_instances(image, sample.modality), sample)

    def stated_postprocess(self, task: InstanceTask, scale: float, diameter_px: float | None,
                           second_look_px: float | None) -> dict[str, Any]:
        return {"task": task.version, "params": {}, "rule": "classical: Gaussian 1 px, Otsu, holes filled, "
                f"distance watershed seeded at h-maxima of {SEED_HEIGHT_PX:g} px, particles of at least "
                f"{MIN_SIZE_PX} px; fixed, nothing tuned"}


harness_methods = provides_methods(Oracle, Classical)
