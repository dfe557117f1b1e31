"""``harness evaluate``: score a folder of predicted masks against a folder of true masks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from harness.data.io import lies_inside, write_text_atomic
from harness.data.masks import CONNECTIVITIES
from harness.data.splits import MAX_SEED
from harness.errors import HarnessError
from harness.metrics.masks import MASK_TYPES
from harness.metrics.match import DEFAULT_IOU_THRESHOLD

if TYPE_CHECKING:
    from harness.metrics.folders import UnitsOption
    from harness.metrics.masks import MaskType


@click.command("evaluate")
@click.option("--pred", "pred_dir", type=click.Path(path_type=Path), required=True,
              help="Predicted masks: DIR/masks/ (folder format) or a plain folder of mask files.")
@click.option("--truth", "truth_dir", type=click.Path(path_type=Path), required=True,
              help="True masks, same stems as --pred; its metadata.csv gives pixel sizes and data bars.")
@click.option("--metadata", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="metadata.csv to use instead of the truth folder's own.")
@click.option("--pixel-size", "pixel_size_nm", type=float, default=None,
              help="Pixel size in nm for every image (overrides metadata.csv).")
@click.option("--units", type=click.Choice(["auto", "nm", "px"]), default="auto", show_default=True,
              help="Size units: nm (error if a pixel size is unknown), px, or auto (nm where known).")
@click.option("--connectivity", type=click.Choice([str(c) for c in CONNECTIVITIES]), default="8",
              show_default=True, help="Neighbourhood that joins pixels of a binary mask into one particle.")
@click.option("--mask-type", type=click.Choice(MASK_TYPES), default="auto", show_default=True,
              help="auto: a mask with one non-zero value (0/1, 0/255, ...) is binary and split into connected "
                   "components; two or more values are instance ids.")
@click.option("--iou-threshold", type=click.FloatRange(0, 1, min_open=True), default=DEFAULT_IOU_THRESHOLD,
              show_default=True, help="IoU at which a predicted particle matches a true one.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the bootstrap confidence intervals.")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write every per-image and aggregate number to this JSON file.")
def evaluate(pred_dir: Path, truth_dir: Path, metadata: Path | None, pixel_size_nm: float | None,
             units: UnitsOption, connectivity: str, mask_type: MaskType, iou_threshold: float, seed: int,
             json_out: Path | None) -> None:
    """Compare predicted with true instance masks: particle count and size errors per length scale.

    Example: harness evaluate --pred runs/pred --truth data/test --json scores.json
    """
    from harness.metrics.folders import evaluate_folders

    for folder, name in ((pred_dir, "--pred"), (truth_dir, "--truth")):
        if json_out is not None and lies_inside(json_out, folder):
            raise HarnessError(f"--json {json_out}: inside the {name} folder {folder}; write the scores elsewhere "
                               "(they would overwrite or sit among the masks)")

    result = evaluate_folders(
        pred_dir,
        truth_dir,
        metadata=metadata,
        pixel_size_nm=pixel_size_nm,
        units=units,  # click.Choice has checked these
        connectivity=4 if connectivity == "4" else 8,
        mask_type=mask_type,
        iou_threshold=iou_threshold,
        seed=seed,
        warn=lambda message: click.echo(f"warning: {message}", err=True),
    )
    in_nm = sum(r.scores.units == "nm" for r in result.images)
    click.echo(f"{len(result.images)} images; sizes in nm for {in_nm}, in px for {len(result.images) - in_nm}"
               + (f"; pixel sizes from {result.metadata}" if result.metadata else ""))
    click.echo(result.report.table())
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(result.model_dump(mode="json"), indent=1) + "\n")
        click.echo(f"wrote {json_out}")


COMMANDS = [evaluate]
