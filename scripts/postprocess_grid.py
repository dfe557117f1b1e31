"""Diagnostic: a wider post-processing grid than the task's, tuned on a folder's validation split.

Not part of the task: it measures candidate post-processing levers (Gaussian smoothing of the
distance map, an absolute minimum area at the working scale, dropping particles smaller than a
share of the image's largest, h-maxima seeds) before any of them becomes a task version; the share,
the h-maxima seeds and ``--tta`` became ``distmap-v3`` (harness.task). The grid is searched on
the *validation* images only with the run's own criterion, profile and split (from its record); the
test split is scored once, for the chosen parameters and for the task's own grid beside it.

    python scripts/postprocess_grid.py --run RUN_DIR --dataset FOLDER [--task distmap-v3]

The README's EMPS figures (none at 100%, seed 0) came from this command; ``--tta`` measures one
more lever (test-time flips and turns), and ``--task`` reads a network with another version's
post-processing where the two share the network's maps (a distmap-v2 run read as distmap-v3, whose
training is v2's: the README's seed-1 v3 figure). The network's maps are computed once per image;
every candidate goes through the pipeline's own scoring (harness.evaluation.tuning.score_candidates), so
a folder's particles on printed marks are dropped in every row (:mod:`harness.data.printed`,
dataset version folder-2).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from harness.data.splits import make_manifest
from harness.errors import HarnessError
from harness.evaluation.predict import dihedral_maps, labels_from_maps, maps_at, predict_maps, score_labels
from harness.evaluation.selection import selection_score
from harness.evaluation.tuning import score_candidates
from harness.metrics import ImageScores
from harness.results.artifacts import load_model
from harness.results.record import RECORD_FILE, read_record
from harness.task import InstanceTask, get_task
from harness.training.runtime import resolve_runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a file or loaded by path in tests
from _split_diagnostic import open_run_folder

# the candidates beyond the task's own grid (seed and foreground thresholds stay the task's)
WIDER_GRID: dict[str, tuple[Any, ...]] = {"smooth_sigma": (1.0, 2.0), "min_size_px": (4, 16, 36),
                                          "min_share": (0.0, 0.05, 0.1, 0.2)}
# h-maxima seeds (distance_instances' seed_dynamic): fewer seed thresholds, as the dynamic decides most
DYNAMIC_GRID: dict[str, tuple[Any, ...]] = {"seed_threshold": (0.3, 0.5), "seed_dynamic": (0.1, 0.2, 0.3),
                                            "smooth_sigma": (1.0, 2.0), "min_size_px": (4, 16, 36),
                                            "min_share": (0.0, 0.1, 0.2)}


def _wider(task: InstanceTask, grid: dict[str, tuple[Any, ...]]) -> InstanceTask:
    return dataclasses.replace(task, grid={**task.grid, **grid})


def _summary(scores: list[ImageScores]) -> str:
    count = [s.count_rel_error for s in scores if s.count_rel_error is not None]
    f1 = [s.f1 or 0.0 for s in scores]
    return f"mean count error {np.mean(count):.3f}, mean F1 {np.mean(f1):.3f}"


@click.command()
@click.option("--run", "run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True)
@click.option("--dataset", required=True, help="The folder dataset the run was made on.")
@click.option("--tta", is_flag=True,
              help="Average the maps over the 8 flips and quarter turns of each image (a task with TTA always does).")
@click.option("--task", "task_version", default=None, metavar="VERSION",
              help="Post-process as this task version (its grid and TTA); default: the run's card. Its maps "
                   "must be the run's task's (distmap-v2 and -v3 share them).")
@click.option("--task-only", is_flag=True, help="Only the task's own grid (e.g. the run re-read as --task).")
@click.option("--second-look", "second_look_px", type=float, default=None, metavar="PX",
              help="Give each image a second look aiming at PX (harness.task.scale); default: as the run's card says.")
@click.option("--connectivity", type=click.Choice(["4", "8"]), default="8", show_default=True,
              help="As the run was given it: the pixel connectivity that turns binary masks into particles.")
def main(run_dir: Path, dataset: str, tta: bool, task_version: str | None, task_only: bool,
         second_look_px: float | None, connectivity: str) -> None:
    """Search the grids on validation; score the chosen parameters once on test."""
    torch.set_num_threads(1)
    net, card = load_model(run_dir)
    if not (run_dir / RECORD_FILE).is_file():
        raise click.UsageError(f"--run {run_dir}: no {RECORD_FILE} (the profile, seeds and criterion come from it)")
    # the run's own profile, seeds and selection criterion, so that the task row is the run's tuning
    record = read_record(run_dir / RECORD_FILE)
    seeds, criterion = record.seeds, record.settings["selection"]
    trained, scale = get_task(card["task"]), float(card["working_scale"])
    try:
        task = trained if task_version is None else get_task(task_version)
    except HarnessError as error:
        raise click.UsageError(f"--task: {error}") from None
    if "seed_threshold" not in task.grid:  # the wider grids extend the distance-map post-processing
        raise click.UsageError(f"--run {run_dir}: task {task.version} has no distance-map grid to widen")
    if (task.maps, task.num_outputs) != (trained.maps, trained.num_outputs):
        raise click.UsageError(f"--task {task.version}: its maps are not those of the run's task {trained.version}")
    folder = open_run_folder(run_dir, dataset, int(connectivity))
    pools = make_manifest(folder, seeds.split).pools
    runtime = resolve_runtime("cpu")
    net = runtime.prepare(net)
    samples = {p: [folder.load(i) for i in pools[p]] for p in ("val", "test")}
    look = dihedral_maps if tta or task.tta else maps_at
    second_look_px = card.get("second_look_px") if second_look_px is None else second_look_px
    maps = {s.id: predict_maps(net, s, runtime, task, scale, second_look_px, look)
            for pool in samples.values() for s in pool}

    grids = ((f"task grid ({task.version})", task), ("wider grid", _wider(task, WIDER_GRID)),
             ("wider grid, h-maxima seeds", _wider(task, DYNAMIC_GRID)))[: 1 if task_only else None]
    for name, grid_task in grids:
        candidates = grid_task.candidates()  # the defaults first: they win ties, as in the pipeline's tuning
        validation = score_candidates([maps[s.id] for s in samples["val"]], samples["val"], grid_task, candidates)
        best = int(np.argmax([selection_score(scores, criterion) for scores in validation]))
        test = [score_labels(labels_from_maps(maps[s.id], s, grid_task, candidates[best]), s) for s in samples["test"]]
        click.echo(f"{name}: chosen on validation {candidates[best]}; "
                   f"validation {_summary(validation[best])}; test {_summary(test)}")


if __name__ == "__main__":
    main()
