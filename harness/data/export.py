"""Write a pool of a dataset in the folder format (see :mod:`harness.data.io`)."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from harness.data.base import Dataset
from harness.data.io import (
    METADATA_FILE,
    csv_text,
    folder_written_whole,
    lies_inside,
    write_image,
    write_label_image,
    write_text_atomic,
)
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
    exactly what a user's unlabeled pretraining folder looks like. Everything is written into a
    hidden folder beside ``out`` that is renamed to ``out`` at the end, so an export that is
    stopped leaves no half folder under the name asked for (and can simply be run again).
    """
    if pool != "all" and pool not in POOLS:
        raise HarnessError(f"unknown split {pool!r}: choose one of {', '.join(POOLS)} or all")
    if limit is not None and limit < 1:
        raise HarnessError(f"--limit must be at least 1, got {limit}")
    pools = POOLS if pool == "all" else (pool,)
    chosen = [(p, i) for p in pools for i in manifest.pools[p]]
    if limit is not None:
        chosen = chosen[:limit]
    source = getattr(dataset, "root", None)  # a folder dataset: an export must not land among its own files
    if source is not None and lies_inside(out, source):
        raise HarnessError(f"--out {out} lies inside the dataset folder {source}: choose a folder outside it")
    if not chosen:
        held = ", ".join(f"{p} {len(ids)}" for p, ids in manifest.pools.items())
        raise HarnessError(f"split {pool!r} of {manifest.dataset.key} holds no image ({held}): nothing to export")
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"{out}: output folder is not empty; choose a new folder")
    with folder_written_whole(out) as work:
        rows = _write_samples(dataset, chosen, work, pool, progress)
        write_text_atomic(work / METADATA_FILE, csv_text(EXPORT_COLUMNS, rows))
    return len(rows)


def _write_samples(dataset: Dataset, chosen: list[tuple[str, str]], work: Path, pool: str,
                   progress: bool) -> list[dict]:
    rows = []
    for source_pool, sample_id in tqdm(chosen, desc=f"export {pool}", unit="img", disable=not progress):
        sample = dataset.load(sample_id)
        name = f"{sample_id}.tif"
        write_image(work / "images" / name, sample.image)
        if sample.mask is not None and source_pool != "unlabeled":
            write_label_image(work / "masks" / name, sample.mask)
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
    return rows
