"""The folder format's constants and what a scan reports: problems, image records, the scan."""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

IMAGES_DIR = "images"
MASKS_DIR = "masks"
# 2: predicted particles on printed marks are not counted; 3: images of runs that resample get a second
# look at their own factor (harness.task.scale; no embedded dataset resamples, so only folders move);
# 4: the second look also predicts at half the run's factor (a shattered particle is seen whole there), and
# fine-tuning shows each labelled image at the factor the second look gives from its true particles;
# 5: the second look sizes particles by their width (twice the inscribed radius), not their equivalent
# diameter, so a rod is not shrunk until it is a few pixels thick; 6: the reference rows read images as the
# runs do (the oracle at the working resolution, both dropping particles on print), and an image without a
# pixel size goes to the length-scale bin its metadata.csv declares in runs too, as in `harness evaluate`;
# 7: a run that resamples pretrains on its pool at the labelled training pool's working resolution, not at
# native pixels; 8: at its budget's own working resolution instead (a small budget learnt one median from
# masks outside it). Context.pretraining_scale; runs of `none` and the reference rows unchanged by either;
# 9: a true particle on print is not scored either, as predictions on it are not (harness.evaluation.predict.
# score_labels): the OCR read a clump of BAM's TiO2 particles as "8", and the clump counted as missed by
# every method and by the oracle (docs/bam-tio2.md). Model selection and tuning read the same scores
FOLDER_VERSION = "folder-9"
# the folder versions whose trained models predict as this one does (folder-7 and -8 moved pretraining only;
# folder-9 moved what is scored, not what is predicted)
PREDICTS_AS_CURRENT = frozenset({"folder-6", "folder-7", "folder-8", FOLDER_VERSION})

SPLIT_FRACTIONS = {"unlabeled": 0.0, "train": 0.6, "val": 0.2, "test": 0.2}
LUMA = np.array([0.299, 0.587, 0.114])
#: metadata.csv and tag pixel sizes further apart than this share are reported.
PIXEL_SIZE_TOLERANCE = 0.02
PIL_DTYPES = {"I;16": "uint16", "I;16B": "uint16", "I;16L": "uint16", "I": "int32", "F": "float32"}
RGB_MASK = "mask is RGB; save instance labels or a binary mask as a single-channel image"


def folder_version_of(dataset_key: str) -> str | None:
    """The folder version in a dataset key (``mine-vfolder-7-<hash>``: ``folder-7``); None for an
    embedded dataset's key."""
    found = re.search(r"-v(folder-\d+)-[0-9a-f]+$", dataset_key)
    return found.group(1) if found else None


Severity = Literal["error", "warning"]
Layout = Literal["gray", "rgb", "palette"]


class Problem(BaseModel):
    """One thing wrong with a folder: the file (relative to the folder) and why."""

    model_config = ConfigDict(frozen=True)

    file: str
    reason: str
    severity: Severity = "error"
    code: str | None = None  # a kind some callers treat apart: "leak" (allowed by --allow-leakage)

    def line(self) -> str:
        return f"{self.severity:<8} {self.file}: {self.reason}"


class ImageRecord(BaseModel):
    """What the headers and metadata.csv say about one image (no pixels read)."""

    model_config = ConfigDict(frozen=True)

    id: str
    image: str  # path relative to the folder
    mask: str | None
    shape: tuple[int, int]
    dtype: str
    layout: Layout
    pixel_size_nm: float | None
    pixel_size_source: str
    modality: str
    length_scale: str
    split: str | None
    databar_rows: int | None  # None: detect when loading
    databar_source: str | None
    magnification: float | None = None
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


class FolderScan(BaseModel):
    """The result of reading a folder's listing, metadata.csv and file headers."""

    root: str
    records: list[ImageRecord]
    problems: list[Problem]  # folder-level problems (listing, metadata.csv, stray masks)

    def all_problems(self) -> list[Problem]:
        return [*self.problems, *(p for r in self.records for p in r.problems)]

    def errors(self) -> list[Problem]:
        return [p for p in self.all_problems() if p.severity == "error"]
