"""Scoring a folder of predicted masks against a folder of true masks (``harness evaluate``).

Accepted layouts, on either side: the folder format (``DIR/masks/<stem>.tif|.tiff|.png``) or a
plain folder of mask files (``DIR/<stem>.tif|...``). Files are paired by stem; a stem present on
one side only is an error. Pixel sizes and data bars come from ``metadata.csv`` (``--metadata``,
else the truth folder's own ``DIR/metadata.csv``, else the one next to a ``masks`` folder given
directly), whose ``image`` column names the image file: its stem is the mask stem.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from harness.data.folder import parse_metadata_row, read_metadata_table
from harness.data.io import (
    IMAGE_SUFFIXES,
    METADATA_FILE,
    link_problem,
    read_array,
    separator_hint,
    stem_key,
)
from harness.data.scales import UNKNOWN_SCALE, length_scale_of
from harness.errors import HarnessError
from harness.metrics.aggregate import MetricsReport, aggregate
from harness.metrics.masks import Connectivity, MaskType, prepare_labels
from harness.metrics.match import DEFAULT_IOU_THRESHOLD
from harness.metrics.scores import ImageScores, score_image

UnitsOption = Literal["auto", "nm", "px"]
UNITS_OPTIONS: tuple[str, ...] = ("auto", "nm", "px")
_SHOW = 5  # stems listed in an error before "and N more"


class ImageMeta(BaseModel):
    model_config = ConfigDict(frozen=True)

    pixel_size_nm: float | None = None
    databar_rows: int = 0
    length_scale: str | None = None


class ImageResult(BaseModel):
    """One scored image: where its masks came from, its bin and its scores."""

    model_config = ConfigDict(frozen=True)

    stem: str
    pred_file: str
    truth_file: str
    length_scale: str
    pixel_size_nm: float | None
    pred_was_binary: bool
    truth_was_binary: bool
    scores: ImageScores


class FolderEvaluation(BaseModel):
    """Everything ``harness evaluate --json`` writes."""

    model_config = ConfigDict(frozen=True)

    pred_dir: str
    truth_dir: str
    metadata: str | None
    units: UnitsOption
    connectivity: int
    mask_type: str
    iou_threshold: float
    images: list[ImageResult]
    report: MetricsReport


def _listing(stems: list[str]) -> str:
    shown = ", ".join(stems[:_SHOW])
    return shown + (f" and {len(stems) - _SHOW} more" if len(stems) > _SHOW else "")


def mask_folder(directory: Path, side: str) -> Path:
    """The folder holding the mask files: ``DIR/masks`` when it exists, else ``DIR`` itself."""
    directory = Path(directory)
    if not directory.is_dir():
        raise HarnessError(f"{side} folder {directory}: not found or not a folder")
    masks = directory / "masks"
    return masks if masks.is_dir() else directory


def list_masks(directory: Path, side: str) -> dict[str, Path]:
    """Mask files by stem; an error for an empty folder or two files with one stem."""
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if not path.is_file():  # named as a mask but not one: say so rather than report its stem missing
            problem = link_problem(path) or ("is a folder" if path.is_dir() else "is not a regular file")
            raise HarnessError(f"{path}: {problem}, not a mask file")
        if stem_key(path) in found:
            raise HarnessError(f"{side} folder {directory}: two mask files share the stem {path.stem!r} "
                               f"({found[stem_key(path)].name}, {path.name})")
        found[stem_key(path)] = path
    if not found:
        raise HarnessError(f"{side} folder {directory}: no mask files ({', '.join(IMAGE_SUFFIXES)})")
    return found


def pair_masks(pred_dir: Path, truth_dir: Path) -> list[tuple[str, Path, Path]]:
    """(stem, pred file, truth file) for every stem; an error naming stems missing on either side."""
    pred_folder, truth_folder = mask_folder(pred_dir, "pred"), mask_folder(truth_dir, "truth")
    pred, truth = list_masks(pred_folder, "pred"), list_masks(truth_folder, "truth")
    no_pred = sorted(set(truth) - set(pred))
    no_truth = sorted(set(pred) - set(truth))
    parts = []  # both sides in one line, so one run shows everything to fix
    if no_pred:
        parts.append(f"pred folder {pred_folder}: no mask for {len(no_pred)} true mask(s): {_listing(no_pred)}")
    if no_truth:
        parts.append(f"truth folder {truth_folder}: no mask for {len(no_truth)} predicted mask(s): "
                     f"{_listing(no_truth)}")
    if parts:
        raise HarnessError("; ".join(parts))
    return [(stem, pred[stem], truth[stem]) for stem in sorted(truth)]


def find_metadata(truth_dir: Path) -> Path | None:
    """The truth folder's ``metadata.csv`` (also next to a ``masks`` folder given directly)."""
    truth_dir = Path(truth_dir)
    candidates = [truth_dir / METADATA_FILE]
    if truth_dir.name == "masks":
        candidates.append(truth_dir.parent / METADATA_FILE)
    return next((c for c in candidates if c.is_file()), None)


def read_metadata(path: Path) -> dict[str, ImageMeta]:
    """Per-stem pixel size, data-bar height and length-scale name from a ``metadata.csv``, read by
    the folder format's own reader (:func:`harness.data.folder.read_metadata_table`); here every
    problem is an error, since a score with a wrong pixel size is worse than none."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: metadata file not found")
    table = read_metadata_table(path)
    errors = [p for p in table.problems if p.severity == "error"]
    if errors:
        raise HarnessError(f"{path}: {errors[0].reason}")
    if "pixel_size_nm" not in table.columns:
        raise HarnessError(f"{path}: missing column 'pixel_size_nm' (has: {', '.join(table.columns)})"
                           + separator_hint(table.columns))
    meta: dict[str, ImageMeta] = {}
    for line, given, record in table.rows:
        row = parse_metadata_row(record, line, given)
        if row.problems:
            raise HarnessError(f"{path}: {row.problems[0].reason}")
        stem = stem_key(given)
        if stem in meta:
            raise HarnessError(f"{path}, line {line}: image stem {stem!r} appears twice")
        meta[stem] = ImageMeta(pixel_size_nm=row.pixel_size_nm, databar_rows=row.databar_rows or 0,
                               length_scale=row.length_scale)
    return meta


def evaluate_folders(
    pred_dir: Path,
    truth_dir: Path,
    metadata: Path | None = None,
    pixel_size_nm: float | None = None,
    units: UnitsOption = "auto",
    connectivity: Connectivity = 8,
    mask_type: MaskType = "auto",
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    seed: int = 0,
    warn: Callable[[str], None] = lambda message: None,
) -> FolderEvaluation:
    """Score every mask pair and aggregate per length-scale bin.

    ``pixel_size_nm`` overrides every pixel size. ``units`` "nm" demands a known pixel size for
    every image (else a HarnessError naming them); "px" measures sizes in pixels even where the
    pixel size is known (the length-scale bin still uses it); "auto" uses nm where known.
    ``warn`` receives one-line warnings (binary masks converted, pixel sizes unknown).
    """
    if units not in UNITS_OPTIONS:
        raise HarnessError(f"units must be one of {', '.join(UNITS_OPTIONS)}, got {units!r}")
    if pixel_size_nm is not None and not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise HarnessError(f"--pixel-size must be a positive number of nm per pixel, got {pixel_size_nm}")
    pairs = pair_masks(Path(pred_dir), Path(truth_dir))
    metadata_path = Path(metadata) if metadata is not None else find_metadata(Path(truth_dir))
    meta = read_metadata(metadata_path) if metadata_path is not None else {}

    def info(stem: str) -> ImageMeta:
        found = meta.get(stem, ImageMeta())
        return found.model_copy(update={"pixel_size_nm": pixel_size_nm}) if pixel_size_nm is not None else found

    unknown = [stem for stem, _, _ in pairs if info(stem).pixel_size_nm is None]
    if unknown and units == "nm":
        source = (f"in {metadata_path}" if metadata_path is not None
                  else "(no metadata.csv found; use --metadata or --pixel-size)")
        raise HarnessError(f"--units nm: pixel size unknown {source} for {len(unknown)} mask(s): {_listing(unknown)}")
    if unknown and units == "auto":
        warn(f"pixel size unknown for {len(unknown)} of {len(pairs)} images ({_listing(unknown)}): "
             "their sizes are in px and they go to the 'unknown' length-scale bin")

    results: list[ImageResult] = []
    binaries = {"pred": 0, "truth": 0}
    for stem, pred_file, truth_file in pairs:
        image_meta = info(stem)
        pred, pred_binary = prepare_labels(read_array(pred_file, labels=True), str(pred_file), mask_type,
                                           connectivity)
        truth, truth_binary = prepare_labels(read_array(truth_file, labels=True), str(truth_file), mask_type,
                                             connectivity)
        binaries["pred"] += pred_binary
        binaries["truth"] += truth_binary
        if pred.shape != truth.shape:
            raise HarnessError(f"{pred_file}: shape {pred.shape} differs from {truth_file} shape {truth.shape}")
        if image_meta.databar_rows >= truth.shape[0]:
            raise HarnessError(f"{metadata_path}: databar_rows {image_meta.databar_rows} for {stem!r} "
                               f"is not smaller than the mask height {truth.shape[0]} ({truth_file})")
        scores = score_image(
            pred,
            truth,
            None if units == "px" else image_meta.pixel_size_nm,
            image_meta.databar_rows,
            iou_threshold=iou_threshold,
        )
        scale = length_scale_of(image_meta.pixel_size_nm)
        if scale == UNKNOWN_SCALE and image_meta.length_scale is not None:
            scale = image_meta.length_scale
        results.append(
            ImageResult(
                stem=stem,
                pred_file=str(pred_file),
                truth_file=str(truth_file),
                length_scale=scale,
                pixel_size_nm=image_meta.pixel_size_nm,
                pred_was_binary=pred_binary,
                truth_was_binary=truth_binary,
                scores=scores,
            )
        )
    for side, count in binaries.items():
        if count:
            warn(f"{count} {side} mask(s) are binary: split into particles by {connectivity}-connected components; "
                 "touching particles merge into one")
    report = aggregate([r.scores for r in results], [r.length_scale for r in results], seed=seed)
    return FolderEvaluation(
        pred_dir=str(pred_dir),
        truth_dir=str(truth_dir),
        metadata=None if metadata_path is None else str(metadata_path),
        units=units,
        connectivity=connectivity,
        mask_type=mask_type,
        iou_threshold=iou_threshold,
        images=results,
        report=report,
    )

