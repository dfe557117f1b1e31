"""The working resolution: particles much larger than the network's view are shrunk to fit it.

The network sees 128 px crops at the quick profile; a particle of 300 px is never seen whole and
comes back in pieces. So, identically for every method, the task picks one resampling factor per
run from the labelled images it may use (the budget's masks, never validation or test): when their
median particle diameter exceeds ``max_diameter_px``, every image of fine-tuning, validation and
test is resampled so that it becomes ``target_diameter_px``; otherwise nothing is resampled. Test
predictions are mapped back to the original pixels (nearest neighbour) and scored there, against the
untouched ground truth. Pretraining is independent of the budget and always sees native pixels.

The run's factor fits the budget's median particle, but real folders mix magnifications (EMPS:
per-image median diameters from 18 to 355 px), and an image of a few 400 px particles, shrunk by a
factor made for 104 px ones, still comes back in pieces. So where the run resamples (factor < 1),
each image gets a second look: the network predicts it at the run's factor and at
:func:`probe_scale` (half of it), and the particles found, area-weighted (a shattered particle's
pieces are small, the large whole ones weigh more), give the image's particle size, the wider of
the two estimates, since shattering only ever makes particles look smaller. An image whose particles
come out more than ``SECOND_LOOK_MARGIN`` times the target at the run's factor is predicted once
more, shrunk so that they become the target size (:func:`own_scale`). A particle's size here is its
width, twice its largest inscribed radius (:func:`area_weighted_width_px`): what the network must
see across to place the particle's centre. For a round particle it is its diameter; a rod's
equivalent diameter (that of a disk of its area) is several times its thickness, and sizing by it
(folder-4) shrank an EMPS wire 55 px thick to 7 px; by width (since folder-5) it keeps the run's
factor. A rod's pieces also keep its width, so shattering along it does not hide it. The look never
enlarges (trained and predicted so, enlarging narrow particles up to native pixels tied on EMPS
validation and did worse on test: README, EMPS), and a run at native pixels (factor 1, every embedded
dataset) is untouched. Fine-tuning shows each labelled image at the factor the same rule gives from
its true particles (:class:`harness.training.batches.ImageStore`), so the network learns the sizes
it is shown.

Measured on EMPS validation (none at 100%, resnet18, mean count error / F1, the run's thresholds).
Trained at the run's factor only (folder-3): the run's factor 1.23 / 0.67, the look at the run's
factor alone 0.74 / 0.73, with the probe 0.74 / 0.69, each image at its true size 0.48 / 0.72.
Trained at each image's factor: the run's factor 1.93 / 0.62 (the network now shatters what it never
saw whole), the look at the run's factor alone 1.06 / 0.76 (so the shards hide the size), with the
probe 0.37 / 0.82 (probes down to an eighth of the factor: 0.41 / 0.82), each image at its true size
0.31 / 0.83. Other estimates of an unlabelled image's size did worse: the unweighted median of the
found particles, the image's autocorrelation length (Spearman 0.64 with the true size; the
area-weighted look 0.86). Sizing by width rather than equivalent diameter (folder-5), trained and
selected anew, validation seeds 0 / 1: 0.44 / 0.81 and 0.34 / 0.81 (folder-4: 0.40 / 0.79 and
0.69 / 0.76); on test a tie. EMPS wires still break at the run's factor (README, EMPS).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from skimage.transform import rescale, resize

from harness.data.printed import drop_printed
from harness.data.sample import Sample
from harness.errors import HarnessError
from harness.task.targets import particle_distances


def _areas_and_diameters(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each particle's area and equivalent diameter, in px, of an instance mask."""
    labels = np.asarray(labels)
    _, areas = np.unique(labels[labels > 0], return_counts=True)
    return areas, 2.0 * np.sqrt(areas / np.pi)


def median_diameter_px(masks: Iterable[np.ndarray]) -> float | None:
    """Median over images of each image's median equivalent particle diameter, in px (None: no particles)."""
    medians = []
    for mask in masks:
        areas, diameters = _areas_and_diameters(mask)
        if areas.size:
            medians.append(float(np.median(diameters)))
    return float(np.median(medians)) if medians else None


def working_scale(diameter_px: float | None, max_diameter_px: float, target_diameter_px: float) -> float:
    """The resampling factor (<= 1) for a budget whose median particle diameter is ``diameter_px``."""
    if not 0 < target_diameter_px <= max_diameter_px:
        raise HarnessError(f"working scale: need 0 < target ({target_diameter_px}) <= max ({max_diameter_px}) px")
    if diameter_px is None or diameter_px <= max_diameter_px:
        return 1.0
    return round(target_diameter_px / diameter_px, 4)


#: the second look shrinks an image whose particles came out wider than this many times the target
SECOND_LOOK_MARGIN = 1.25
#: nor below this many pixels on the image's short side (the network's stride needs some room)
MIN_SIDE_PX = 64


def area_weighted_width_px(labels: np.ndarray) -> float | None:
    """The width of the particle under a random particle pixel, on average (None: none). A particle's
    width is twice its largest inscribed radius: its diameter if round, its thickness if a rod."""
    labels = np.asarray(labels)
    areas, widths = [], []
    for _, own, distance in particle_distances(labels):
        areas.append(int(own.sum()))
        widths.append(2.0 * float(distance.max()))
    if not areas:
        return None
    return float(np.dot(areas, widths) / np.sum(areas))


#: the second look also looks at this share of the run's factor (see :func:`probe_scale`)
PROBE_SHARE = 0.5


def own_scale(width_px: float | None, shape: tuple[int, ...], scale: float, target_diameter_px: float) -> float:
    """The factor (<= ``scale``) for an image of ``shape`` whose particles are ``width_px`` wide in its
    own pixels (area-weighted); ``scale`` itself when, at ``scale``, they are within the margin of the target."""
    if scale >= 1.0 or width_px is None or width_px * scale <= SECOND_LOOK_MARGIN * target_diameter_px:
        return scale
    return round(max(_smallest_scale(scale, shape), target_diameter_px / width_px), 4)


def second_look_scale(labels: np.ndarray, scale: float, target_diameter_px: float) -> float:
    """The image's own factor (<= ``scale``) from ``labels``, particles in the image's pixels (the truth in
    training, what the network found in prediction); ``scale`` itself when it needs no second look."""
    return own_scale(area_weighted_width_px(labels), labels.shape, scale, target_diameter_px)


def probe_scale(scale: float, shape: tuple[int, ...]) -> float:
    """The coarser factor the second look also predicts at: a particle too large for the network at the
    run's factor comes back in pieces, which pass for small particles, but at half the factor it is seen
    whole. Shattering only ever makes particles look smaller, so the larger of the two estimates wins."""
    return round(max(scale * PROBE_SHARE, _smallest_scale(scale, shape)), 4)


def _smallest_scale(scale: float, shape: tuple[int, ...]) -> float:
    """No look shrinks an image of ``shape`` below MIN_SIDE_PX on its short side, nor enlarges it past ``scale``."""
    return min(scale, MIN_SIDE_PX / min(shape[:2]))


def resample_image(image: np.ndarray, scale: float) -> np.ndarray:
    """A [0, 1] float image resampled by ``scale`` (linear, anti-aliased when shrinking), float32."""
    if scale == 1.0:
        return image
    out = rescale(image.astype(np.float32), scale, order=1, anti_aliasing=scale < 1, preserve_range=True)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def resample_labels(labels: np.ndarray, scale: float) -> np.ndarray:
    """Instance labels resampled by ``scale`` (nearest neighbour: ids stay ids), same dtype."""
    if scale == 1.0:
        return labels
    return rescale(labels, scale, order=0, anti_aliasing=False, preserve_range=True).astype(labels.dtype)


def restore_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels predicted at the working resolution, mapped back to the original ``shape`` (nearest)."""
    if labels.shape == tuple(shape):
        return labels
    return resize(labels, shape, order=0, anti_aliasing=False, preserve_range=True).astype(labels.dtype)


def whole_image_labels(instances: np.ndarray, sample: Sample) -> np.ndarray:
    """Instance labels at any working resolution mapped back to the whole image's own pixels (the data
    bar rows stay 0), particles on print still in (`harness predict` shows those apart)."""
    labels = np.zeros(sample.image.shape[:2], dtype=np.int32)
    rows = sample.valid_rows
    labels[:rows] = restore_labels(instances, (rows, sample.image.shape[1]))
    return labels


def labels_from_instances(instances: np.ndarray, sample: Sample) -> np.ndarray:
    """The whole image's labels from instance labels at any working resolution
    (:func:`whole_image_labels`), particles on printed marks dropped (:mod:`harness.data.printed`).
    The one way a network's, the oracle's or the classical row's labels reach the image."""
    return drop_printed(whole_image_labels(instances, sample), sample)
