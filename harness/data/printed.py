"""Printed marks: the parts of a micrograph that carry print rather than specimen.

Figures and instrument exports burn panel letters ("a)"), temperatures ("400 °C"), scale bars and
their labels into the image. They are never particles and the ground truth never labels them, yet
a network trained on particles takes a dark letter in a white box for one: on EMPS (none at 100 %,
resnet18, seed 0) such marks turned single-particle test images into counts of 4 and 5. So a
predicted particle that lies at least :data:`PRINT_SHARE` on print is not counted, identically for
every method: the same rule as the data bar's rows, which are never labels. Scoring drops the true
particles on print too (:func:`harness.evaluation.predict.score_labels`): where the reading of print
is wrong, as when the OCR takes a clump of particles for a digit, no side is charged for it.

Where print can occur is the dataset's knowledge (:attr:`Sample.may_carry_print`): a user's folder
may carry it, the synthetic generators never draw it. Finding it runs the OCR that reads scale bars
(:func:`harness.data.scalebar.printed_boxes`) on the rows above the data bar, once per image
content: the boxes are cached on disk, keyed by the image's bytes and the reader's version.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from harness.data import scalebar
from harness.data.cache import cache_root
from harness.data.intensity import to_unit_float
from harness.data.io import write_text_atomic
from harness.data.masks import drop_ids
from harness.data.sample import Sample

#: A predicted particle with at least this share of its pixels on print is dropped.
PRINT_SHARE = 0.5
MARKS_VERSION = "2"  # bump when printed_boxes changes: the cached boxes are keyed by it

Boxes = tuple[tuple[int, int, int, int], ...]
_seen: dict[str, Boxes] = {}  # validation is scored many times while fine-tuning: read each memo once


def printed_mask(sample: Sample) -> np.ndarray | None:
    """Where ``sample`` carries print (boolean, the image's shape), or None where it cannot."""
    if not sample.may_carry_print:
        return None
    mask = np.zeros(sample.image.shape[:2], dtype=bool)
    for top, left, bottom, right in printed_boxes(sample):
        mask[top:bottom, left:right] = True
    return mask


def printed_boxes(sample: Sample) -> Boxes:
    """The print on ``sample`` above its data bar, as (top, left, bottom, right) boxes, cached."""
    digest = hashlib.sha256(np.ascontiguousarray(sample.image).tobytes()).hexdigest()[:32]
    rows, cols = sample.image.shape[:2]
    key = f"{digest}-{rows}x{cols}-{sample.databar_rows}-{scalebar.READER_VERSION}-{MARKS_VERSION}"
    if key not in _seen:
        _seen[key] = _read_or_find(key, sample)
    return _seen[key]


def _read_or_find(key: str, sample: Sample) -> Boxes:
    memo = cache_root() / "printed-marks" / f"{key}.json"
    if memo.is_file():
        try:
            return tuple((int(a), int(b), int(c), int(d)) for a, b, c, d in json.loads(memo.read_text()))
        except (ValueError, TypeError):  # a damaged memo is found again
            pass
    above = to_unit_float(sample.image, sample.databar_rows)[: sample.valid_rows]
    boxes = tuple(scalebar.printed_boxes(above, scalebar.rapid_ocr()))
    write_text_atomic(memo, json.dumps(boxes))
    return boxes


def drop_printed(labels: np.ndarray, sample: Sample, share: float = PRINT_SHARE) -> np.ndarray:
    """``labels`` (instance ids over the whole image) without the particles at least ``share`` on
    ``sample``'s print; the same array where the sample cannot carry print or nothing is dropped."""
    if labels.max() == 0:  # nothing to drop: no OCR for an image without predictions
        return labels
    mask = printed_mask(sample)
    if mask is None or not mask.any():
        return labels
    area = np.bincount(labels.ravel())
    on_print = np.bincount(labels.ravel(), weights=mask.ravel(), minlength=area.size)
    return drop_ids(labels, on_print >= share * np.maximum(area, 1))
