"""What every dataset provides, embedded or user-supplied."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from harness.data.sample import Sample

INDEX_COLUMNS = ("id", "labeled", "pixel_size_nm", "length_scale", "modality", "split")
#: An optional index column: each image's class, where a dataset has classes (synthetic-nanowire).
CATEGORY_COLUMN = "category"


def stable_hash(payload: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of ``payload`` (sorted keys), shortened to ``length`` hex."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class DatasetIdentity(BaseModel):
    """Everything that decides a dataset's content. Results carry it; caches are keyed by it."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    params_hash: str

    @property
    def key(self) -> str:
        return f"{self.name}-v{self.version}-{self.params_hash}"


class Dataset(ABC):
    """A collection of micrographs, addressed by sample id.

    ``index()`` must be cheap (no pixel work): it returns one row per sample with the columns
    :data:`INDEX_COLUMNS` (``split`` is None unless the dataset fixes a sample's pool).
    ``split_fractions`` says how labeled samples without a fixed split are shared between the
    pools ``unlabeled``, ``train``, ``val`` and ``test``.
    """

    identity: DatasetIdentity
    split_fractions: dict[str, float]

    @abstractmethod
    def index(self) -> pd.DataFrame: ...

    @abstractmethod
    def load(self, sample_id: str) -> Sample: ...

    def describe(self) -> dict[str, Any]:
        """Summary for ``harness datasets``."""
        index = self.index()
        return {
            "name": self.identity.name,
            "version": self.identity.version,
            "images": len(index),
            "labeled": int(index["labeled"].sum()),
            "modality": ", ".join(sorted(index["modality"].unique())),
            "length_scales": ", ".join(
                f"{k}:{v}" for k, v in index["length_scale"].value_counts().sort_index().items()
            ),
        }


def image_classes(dataset: Dataset) -> dict[str, str] | None:
    """Sample id -> class, from the index's :data:`CATEGORY_COLUMN`; None without classes."""
    index = dataset.index()
    if CATEGORY_COLUMN not in index.columns:
        return None
    return {str(i): str(c) for i, c in zip(index["id"], index[CATEGORY_COLUMN], strict=True) if c is not None}
