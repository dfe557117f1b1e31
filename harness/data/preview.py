"""A montage of a dataset across length scales with instance outlines, for people to look at."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from skimage.segmentation import find_boundaries

from harness.data.base import Dataset
from harness.data.intensity import to_unit_float
from harness.data.io import write_bytes_atomic
from harness.data.scales import SCALE_NAMES, UNKNOWN_SCALE
from harness.errors import HarnessError

OUTLINE_RGB = (1.0, 0.15, 0.1)


def overlay(image: np.ndarray, mask: np.ndarray | None, databar_rows: int = 0) -> np.ndarray:
    """Grey image as RGB with instance outlines painted in."""
    grey = to_unit_float(image, databar_rows)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if mask is not None and mask.any():
        rgb[find_boundaries(mask, mode="inner")] = OUTLINE_RGB
    return rgb


def render_preview(datasets: list[Dataset], out: Path, per_scale: int = 2) -> Path:
    """Rows: dataset x length-scale bin; ``per_scale`` images per row, each shown twice
    (plain, and with outlines). Labeled images are preferred."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise HarnessError(f"{out}: the preview is a PNG; give a file name ending in .png")
    rows = []
    for dataset in datasets:
        index = dataset.index()
        index = index.sort_values(["labeled", "id"], ascending=[False, True])
        for scale in (*SCALE_NAMES, UNKNOWN_SCALE):
            ids = list(index.loc[index["length_scale"] == scale, "id"][:per_scale])
            if ids:
                rows.append((dataset.identity.name, scale, ids, dataset))
    if not rows:
        raise HarnessError("nothing to preview: the dataset has no images")
    cols = 2 * per_scale
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.6 * cols, 2.8 * len(rows)), squeeze=False)
    for r, (name, scale, ids, dataset) in enumerate(rows):
        for c in range(per_scale):
            plain, outlined = axes[r, 2 * c], axes[r, 2 * c + 1]
            for ax in (plain, outlined):
                ax.axis("off")
            if c >= len(ids):
                continue
            sample = dataset.load(ids[c])
            grey = to_unit_float(sample.image, sample.databar_rows)
            plain.imshow(grey, cmap="gray", vmin=0, vmax=1)
            outlined.imshow(overlay(sample.image, sample.mask, sample.databar_rows))
            pixel = "? nm/px" if sample.pixel_size_nm is None else f"{sample.pixel_size_nm:.2g} nm/px"
            n = 0 if sample.mask is None else int(len(np.unique(sample.mask)) - 1)
            plain.set_title(f"{name} {scale}\n{sample.id}, {pixel}", fontsize=7)
            outlined.set_title(f"{n} particles outlined", fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=out.suffix[1:] or "png", dpi=110)
    plt.close(fig)
    return write_bytes_atomic(out, buffer.getvalue())
