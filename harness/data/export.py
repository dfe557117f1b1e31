"""Write a pool of a dataset in the folder format (see :mod:`harness.data.io`)."""

from __future__ import annotations

import csv
from pathlib import Path

from tqdm import tqdm

from harness.data.base import Dataset
from harness.data.io import METADATA_FILE, write_image, write_label_image
from harness.data.splits import POOLS, SplitManifest
from harness.errors import HarnessError

EXPORT_COLUMNS = ("image", "pixel_size_nm", "modality", "length_scale", "databar_rows", "source_pool")


def export_pool(
    dataset: Dataset,
    manifest: SplitManifest,
    pool: str,
    out: Path,
    limit: int | None = None,
    progress: bool = True,
) -> int:
    """Export the samples of ``pool`` (or ``all``) to ``out``; returns the number written.

    Masks are written for labeled pools only: exporting the unlabeled pool gives images alone,
    exactly what a user's unlabeled pretraining folder looks like.
    """
    if pool != "all" and pool not in POOLS:
        raise HarnessError(f"unknown split {pool!r}: choose one of {', '.join(POOLS)} or all")
    if limit is not None and limit < 1:
        raise HarnessError(f"--limit must be at least 1, got {limit}")
    pools = POOLS if pool == "all" else (pool,)
    chosen = [(p, i) for p in pools for i in manifest.pools[p]]
    if limit is not None:
        chosen = chosen[:limit]
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"{out}: output folder is not empty; choose a new folder")
    rows = []
    for source_pool, sample_id in tqdm(chosen, desc=f"export {pool}", unit="img", disable=not progress):
        sample = dataset.load(sample_id)
        name = f"{sample_id}.tif"
        write_image(out / "images" / name, sample.image)
        if sample.mask is not None and source_pool != "unlabeled":
            write_label_image(out / "masks" / name, sample.mask)
        rows.append(
            {
                "image": name,
                "pixel_size_nm": "" if sample.pixel_size_nm is None else repr(float(sample.pixel_size_nm)),
                "modality": sample.modality,
                "length_scale": sample.length_scale,
                "databar_rows": sample.databar_rows,
                "source_pool": source_pool,
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    with open(out / METADATA_FILE, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
