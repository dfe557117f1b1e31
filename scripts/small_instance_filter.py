"""Diagnostic: what dropping small predicted particles would change, on a folder's *validation* split.

Not a benchmark result and not part of the task: it measures a candidate post-processing lever
before it becomes a task version. Predict the validation images first, with the run's model:

    python scripts/small_instance_filter.py link --dataset FOLDER --to VAL_IMAGES
    harness predict --run RUN --images VAL_IMAGES --out PRED
    python scripts/small_instance_filter.py score --dataset FOLDER --pred PRED --working-scale 0.307

The README's EMPS figures (validation, none at 100%, seed 0) came from these three commands.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
from skimage.io import imread

from harness.data.folder.dataset import FolderDataset
from harness.data.registry import open_dataset
from harness.data.splits import make_manifest
from harness.metrics.scores import score_image

Keep = Callable[[int, np.ndarray], bool]  # (an instance's area, every area in the image) -> keep it


def _folder_and_validation_ids(dataset: str, split_seed: int) -> tuple[FolderDataset, list[str]]:
    folder = open_dataset(dataset)
    if not isinstance(folder, FolderDataset):
        raise click.UsageError(f"--dataset {dataset}: give a folder dataset, not an embedded one")
    return folder, list(make_manifest(folder, split_seed).pools["val"])


def _filtered(labels: np.ndarray, keep: Keep) -> np.ndarray:
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    kept = [i for i, a in zip(ids, areas, strict=True) if keep(int(a), areas)]
    return np.where(np.isin(labels, kept), labels, 0)


def _filters(working_scale: float) -> dict[str, Keep]:
    filters: dict[str, Keep] = {"as predicted": lambda a, areas: True}
    for px in (16, 36, 64, 100, 196):
        filters[f">= {px} px2 at the working scale"] = lambda a, areas, px=px: a * working_scale**2 >= px
    for share in (0.02, 0.05, 0.1, 0.2):
        filters[f">= {share:g} x the largest"] = lambda a, areas, share=share: a >= share * areas.max()
    return filters


@click.group()
def main() -> None:
    """Measure small-instance filters on a folder dataset's validation split."""


@main.command()
@click.option("--dataset", required=True, help="The folder dataset (as for harness run --dataset).")
@click.option("--to", "target", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--split-seed", type=int, default=0, show_default=True)
def link(dataset: str, target: Path, split_seed: int) -> None:
    """Link the validation images into TARGET, for harness predict."""
    target.mkdir(parents=True, exist_ok=True)
    folder, ids = _folder_and_validation_ids(dataset, split_seed)
    records = folder.records()
    for sample_id in ids:
        source = folder.root / records[sample_id].image
        if not (target / source.name).exists():
            os.symlink(source.resolve(), target / source.name)
    click.echo(f"{len(ids)} validation image(s) linked into {target}")


@main.command()
@click.option("--dataset", required=True, help="The folder dataset (as for harness run --dataset).")
@click.option("--pred", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help="harness predict's output folder (its masks/).")
@click.option("--working-scale", type=float, required=True, help="The run's working scale (model.json).")
@click.option("--split-seed", type=int, default=0, show_default=True)
def score(dataset: str, pred: Path, working_scale: float, split_seed: int) -> None:
    """Mean count error and mean F1 over the validation images, per filter."""
    folder, ids = _folder_and_validation_ids(dataset, split_seed)
    samples = [folder.load(i) for i in ids]
    predicted = {s.id: imread(pred / "masks" / f"{s.id}.png") for s in samples}
    for name, keep in _filters(working_scale).items():
        scores = [score_image(_filtered(predicted[s.id], keep), np.asarray(s.mask), None, s.databar_rows)
                  for s in samples]
        count = [x.count_rel_error for x in scores if x.count_rel_error is not None]
        f1 = [x.f1 or 0.0 for x in scores]
        n_pred, n_true = sum(x.n_pred for x in scores), sum(x.n_true for x in scores)
        click.echo(f"{name:32s} mean count error {np.mean(count):.3f}  mean F1 {np.mean(f1):.3f}  "
                   f"particles {n_pred} for {n_true}")


if __name__ == "__main__":
    main()
