"""One micrograph as every layer sees it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.data.scales import length_scale_of
from harness.errors import HarnessError

MODALITIES = ("SEM", "TEM", "unknown")


@dataclass(frozen=True, eq=False)
class Sample:
    """An image with, when labeled, its instance mask.

    ``image`` is 2-D, uint8 or uint16 (or float for user data); ``mask`` is 2-D int32 with
    0 = background and one positive id per particle, or None for an unlabeled image.
    ``databar_rows`` bottom rows hold an instrument data bar: they are never labels, never
    trained on and never measured. ``may_carry_print``: the image can carry printed marks (panel
    letters, scale bars and their labels; :mod:`harness.data.printed`), where predicted particles
    are not counted: a user's folder can, the synthetic generators never draw any.
    """

    id: str
    image: np.ndarray
    mask: np.ndarray | None
    pixel_size_nm: float | None
    modality: str = "unknown"
    databar_rows: int = 0
    pixel_size_source: str = "unknown"
    particles: pd.DataFrame | None = field(default=None, repr=False)
    category: str | None = None  # the image's class where a dataset has one (synthetic-nanowire: its morphology)
    may_carry_print: bool = False
    # the bin a folder's metadata.csv states for an image without a pixel size (its length_scale column)
    declared_length_scale: str | None = None

    @property
    def length_scale(self) -> str:
        """The length-scale bin: from the pixel size, else as declared, else unknown (the rule of the
        folder scan and of `harness evaluate`, so a run's bins are the ones re-scoring gives)."""
        if self.pixel_size_nm is None and self.declared_length_scale:
            return self.declared_length_scale
        return length_scale_of(self.pixel_size_nm)

    @property
    def valid_rows(self) -> int:
        """Number of rows above the data bar."""
        return self.image.shape[0] - self.databar_rows

    @property
    def truth(self) -> np.ndarray:
        """The instance mask of a sample that must have one (scoring, budgets): refused in one line
        naming the sample otherwise."""
        if self.mask is None:
            raise HarnessError(f"{self.id} has no mask: it cannot be scored or trained on")
        return self.mask
