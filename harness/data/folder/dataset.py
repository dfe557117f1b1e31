"""Loading records into samples, the folder's content identity, and :class:`FolderDataset`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.data.base import INDEX_COLUMNS, Dataset, DatasetIdentity, stable_hash
from harness.data.cache import cache_root
from harness.data.databar import resolve_databar
from harness.data.folder.decode import _reason, mask_to_instances, read_gray, read_mask_raw, rgb_to_gray
from harness.data.folder.records import (
    FOLDER_VERSION,
    IMAGES_DIR,
    MASKS_DIR,
    SPLIT_FRACTIONS,
    FolderScan,
    ImageRecord,
    Problem,
)
from harness.data.folder.scan import scan_folder
from harness.data.io import (
    METADATA_FILE,
    write_text_atomic,
)
from harness.data.masks import CONNECTIVITIES
from harness.data.sample import Sample
from harness.errors import HarnessError

# ----------------------------------------------------------------------------------------- load


@dataclass
class LoadResult:
    """A loaded sample and what loading found; ``sample`` is None exactly when a problem is an error."""

    sample: Sample | None
    problems: list[Problem]
    databar_source: str = "none"
    mask_kind: str | None = None  # instance, binary or empty
    particles: int = 0


def load_record(record: ImageRecord, root: Path, connectivity: int = 8) -> LoadResult:
    """Read an image and its mask; every problem found in the pixels is returned, not raised."""
    problems: list[Problem] = []
    try:
        image = read_gray(root / record.image)
    except HarnessError as err:
        return LoadResult(None, [Problem(file=record.image, reason=_reason(err))])
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        return LoadResult(None, [Problem(file=record.image, reason=f"float image has {bad} NaN or infinite pixels")])
    try:
        bar, bar_source = resolve_databar(image, None, record.databar_rows)
    except HarnessError as err:
        return LoadResult(None, [Problem(file=record.image, reason=str(err))])
    if record.databar_source is not None:
        bar_source = record.databar_source
    mask = None
    kind = None
    if record.mask is not None:
        mask_path = root / record.mask
        try:
            mask, kind = mask_to_instances(read_mask_raw(mask_path), connectivity, mask_path)
        except HarnessError as err:
            return LoadResult(None, [Problem(file=record.mask, reason=_reason(err))], bar_source)
        height, width = image.shape
        if mask.shape != image.shape:
            if bar > 0 and mask.shape == (height - bar, width):
                mask = np.vstack([mask, np.zeros((bar, width), dtype=np.int32)])
            else:
                reason = f"mask is {mask.shape[0]}x{mask.shape[1]} pixels but the image is {height}x{width}"
                return LoadResult(None, [Problem(file=record.mask, reason=reason)], bar_source)
        if bar > 0:
            in_bar = int(np.count_nonzero(mask[height - bar :]))
            if in_bar:
                problems.append(
                    Problem(
                        file=record.mask,
                        reason=(
                            f"{in_bar} labelled pixels lie in the data bar (bottom {bar} rows, {bar_source}); "
                            "they are ignored"
                        ),
                        severity="warning",
                    )
                )
                mask = mask.copy()
                mask[height - bar :] = 0
    particles = int(np.unique(mask[mask > 0]).size) if mask is not None else 0
    region = image[: image.shape[0] - bar]
    if region.min() == region.max():
        value = region.flat[0]
        if particles:
            reason = f"mask has {particles} particles but the image is empty (every pixel is {value})"
            return LoadResult(None, [*problems, Problem(file=record.image, reason=reason)], bar_source, kind, particles)
        empty = Problem(file=record.image, reason=f"image is empty (every pixel is {value})", severity="warning")
        problems.append(empty)
    sample = Sample(
        id=record.id,
        image=image,
        mask=mask,
        pixel_size_nm=record.pixel_size_nm,
        modality=record.modality,
        databar_rows=bar,
        pixel_size_source=record.pixel_size_source,
        may_carry_print=True,
        declared_length_scale=record.length_scale,
    )
    return LoadResult(sample, problems, bar_source, kind, particles)


def index_frame(records: Iterable[ImageRecord]) -> pd.DataFrame:
    """The dataset index (:data:`~harness.data.base.INDEX_COLUMNS`) of some records."""
    rows = [
        {
            "id": r.id,
            "labeled": r.mask is not None,
            "pixel_size_nm": r.pixel_size_nm,
            "length_scale": r.length_scale,
            "modality": r.modality,
            "split": r.split,
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))


# -------------------------------------------------------------------------------------- identity


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_digests(root: Path) -> list[tuple[str, int, str]]:
    """(relative path, size, blake2b of the bytes) of metadata.csv and every file in images/, masks/.

    Digests are remembered in the harness cache by (size, modification time, status-change time,
    inode) so that opening a large folder again does not re-read every byte. Size and mtime alone
    are not enough: content replaced with the same size and the mtime set back (``touch -r``, a
    restore, a copy keeping times) would keep the old identity; the status-change time cannot be
    set back and a replacing rename brings a new inode. The identity itself never depends on times.
    """
    files = [root / METADATA_FILE] if (root / METADATA_FILE).is_file() else []
    for sub in (IMAGES_DIR, MASKS_DIR):
        if (root / sub).is_dir():
            files += [p for p in sorted((root / sub).iterdir()) if p.is_file() and not p.name.startswith(".")]
    memo_path: Path | None = None
    memo: dict[str, list] = {}
    try:
        memo_path = cache_root() / "folder-digests" / f"{stable_hash(str(root.resolve()))}.json"
        loaded = json.loads(memo_path.read_text())
        memo = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass  # no memo yet, or an unusable cache: digests are computed from the bytes
    result, fresh = [], {}
    for path in files:
        rel = path.relative_to(root).as_posix()
        stat = path.stat()
        known = memo.get(rel)
        when = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        if isinstance(known, list) and len(known) == len(when) + 1 and known[:-1] == when:
            digest = known[-1]
        else:
            digest = _file_digest(path)
        fresh[rel] = [*when, digest]
        result.append((rel, stat.st_size, digest))
    if fresh != memo and memo_path is not None:
        try:
            write_text_atomic(memo_path, json.dumps(fresh))
        except OSError:
            pass  # the memo only saves time
    return result


# ---------------------------------------------------------------------------------------- dataset


class FolderDataset(Dataset):
    """A folder in the folder format (see the module docstring), usable as ``--dataset DIR``."""

    def __init__(self, path: str | Path, connectivity: int = 8, crop_bottom: int | None = None,
                 flat: bool = False, read_masks: bool | None = None) -> None:
        self.root = Path(path)
        self.flat = flat  # micrographs directly in the folder, no masks (scan_folder)
        # predict reads no mask, so a bad one beside its images must not refuse them (default: not flat)
        self.read_masks = not flat if read_masks is None else read_masks
        if not self.root.is_dir():
            raise HarnessError(f"{self.root}: not a folder")
        if connectivity not in CONNECTIVITIES:
            raise HarnessError(f"connectivity must be 4 or 8, got {connectivity}")
        if crop_bottom is not None and crop_bottom < 0:
            raise HarnessError(f"crop-bottom must be >= 0 rows, got {crop_bottom}")
        self.connectivity = connectivity
        self.crop_bottom = crop_bottom
        self.split_fractions = dict(SPLIT_FRACTIONS)
        self._scan: FolderScan | None = None
        self._identity: DatasetIdentity | None = None

    @classmethod
    def of_micrographs(cls, path: str | Path, connectivity: int = 8,
                       crop_bottom: int | None = None) -> FolderDataset:
        """Images to predict (``harness predict``, ``data check --for predict``): the folder format when
        ``path`` holds ``images/``, else a plain folder of micrographs."""
        return cls(path, connectivity, crop_bottom, flat=not (Path(path) / IMAGES_DIR).is_dir(), read_masks=False)

    @property
    def identity(self) -> DatasetIdentity:  # type: ignore[override]
        if self._identity is None:
            payload = {
                "files": content_digests(self.root),
                "options": {"connectivity": self.connectivity, "crop_bottom": self.crop_bottom},
            }
            self._identity = DatasetIdentity(
                name=self.root.resolve().name, version=FOLDER_VERSION, params_hash=stable_hash(payload)
            )
        return self._identity

    def scan(self) -> FolderScan:
        """Headers and metadata of every file (read once, then kept)."""
        if self._scan is None:
            self._scan = scan_folder(self.root, self.crop_bottom, flat=self.flat, read_masks=self.read_masks)
        return self._scan

    def records(self) -> dict[str, ImageRecord]:
        """Usable records by id; a HarnessError naming the problems when the folder has errors."""
        scan = self.scan()
        errors = scan.errors()
        if errors:
            shown = "; ".join(f"{p.file}: {p.reason}" for p in errors[:3])
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise HarnessError(
                f"{self.root}: {len(errors)} problem(s): {shown}{more}; "
                f"run `harness data check {'' if self.read_masks else '--for predict '}{self.root}` for the full list"
            )
        return {r.id: r for r in scan.records}

    def index(self) -> pd.DataFrame:
        return index_frame(self.records().values())

    def load(self, sample_id: str) -> Sample:
        records = self.records()
        if sample_id not in records:
            raise HarnessError(f"{self.root}: no image with id {sample_id!r}")
        result = load_record(records[sample_id], self.root, self.connectivity)
        errors = [p for p in result.problems if p.severity == "error"]
        if result.sample is None or errors:
            raise HarnessError("; ".join(f"{self.root / p.file}: {p.reason}" for p in errors))
        return result.sample


__all__ = [
    "FolderDataset",
    "FolderScan",
    "ImageRecord",
    "LoadResult",
    "Problem",
    "content_digests",
    "index_frame",
    "load_record",
    "read_gray",
    "rgb_to_gray",
    "scan_folder",
]
