"""Diagnostic: a wider post-processing grid than the task's, tuned on a folder's validation split.

Not part of the task: it measures candidate post-processing levers (Gaussian smoothing of the
distance map, an absolute minimum area at the working scale, dropping particles smaller than a
share of the image's largest) before any of them becomes a task version. The grid is searched on
the *validation* images only with the run's own criterion (f1-count); the test split is scored
once, for the chosen parameters and for the task's own grid beside it.

    python scripts/postprocess_grid.py --run RUN_DIR --dataset FOLDER

The README's EMPS figures (none at 100%, seed 0) came from this command. Network maps are computed
once per image and kept in RUN_DIR/grid-maps.pkl.
"""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import click
import numpy as np
import torch
from scipy import ndimage

from harness.data.registry import open_dataset
from harness.data.splits import make_manifest
from harness.evaluation.predict import predict_maps
from harness.evaluation.selection import selection_score
from harness.metrics import ImageScores, score_image
from harness.results.artifacts import load_model
from harness.task import get_task
from harness.task.distmap import DISTANCE, FOREGROUND
from harness.task.postprocess import seeded_watershed
from harness.task.scale import restore_labels
from harness.training.runtime import resolve_runtime

Params = tuple[float, float, float, int, float]  # seed, foreground, sigma, min area px, share of largest
GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "task grid (distmap-v2)": {"seed": (0.3, 0.4, 0.5, 0.6, 0.7), "foreground": (0.4, 0.5, 0.6),
                               "sigma": (1.0,), "min_px": (4,), "share": (0.0,)},
    "wider grid": {"seed": (0.3, 0.4, 0.5, 0.6, 0.7), "foreground": (0.4, 0.5, 0.6), "sigma": (1.0, 2.0),
                   "min_px": (4, 16, 36), "share": (0.0, 0.05, 0.1, 0.2)},
}


def _instances(maps: np.ndarray, params: Params) -> np.ndarray:
    seed, foreground, sigma, min_px, share = params
    distance = ndimage.gaussian_filter(maps[DISTANCE].astype(np.float32), sigma)
    mask = maps[FOREGROUND] > foreground
    seeds, _ = ndimage.label((distance > seed) & mask)
    labels = seeded_watershed(-distance, seeds, mask, int(min_px))
    if share > 0 and labels.max() > 0:
        areas = np.bincount(labels.ravel())
        areas[0] = 0
        small = areas < share * areas.max()
        small[0] = False
        labels[small[labels]] = 0
    return labels


def _summary(scores: list[ImageScores]) -> str:
    count = [s.count_rel_error for s in scores if s.count_rel_error is not None]
    f1 = [s.f1 or 0.0 for s in scores]
    return f"mean count error {np.mean(count):.3f}, mean F1 {np.mean(f1):.3f}"


@click.command()
@click.option("--run", "run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True)
@click.option("--dataset", required=True, help="The folder dataset the run was made on.")
@click.option("--split-seed", type=int, default=0, show_default=True)
def main(run_dir: Path, dataset: str, split_seed: int) -> None:
    """Search the grids on validation; score the chosen parameters once on test."""
    torch.set_num_threads(1)
    net, card = load_model(run_dir)
    task, scale = get_task(card["task"]), float(card["working_scale"])
    folder = open_dataset(dataset)
    pools = make_manifest(folder, split_seed).pools
    runtime = resolve_runtime("cpu")
    net = runtime.prepare(net)
    cache = run_dir / "grid-maps.pkl"
    if cache.exists():
        maps = pickle.loads(cache.read_bytes())
    else:
        maps = {i: predict_maps(net, folder.load(i), runtime, task, scale) for p in ("val", "test") for i in pools[p]}
        cache.write_bytes(pickle.dumps(maps))
    samples = {p: [folder.load(i) for i in pools[p]] for p in ("val", "test")}

    def scores(pool: str, params: Params) -> list[ImageScores]:
        out = []
        for s in samples[pool]:
            labels = np.zeros(s.image.shape[:2], dtype=np.int32)
            labels[: s.valid_rows] = restore_labels(_instances(maps[s.id], params), (s.valid_rows, s.image.shape[1]))
            out.append(score_image(labels, s.truth, s.pixel_size_nm, s.databar_rows))
        return out

    for name, grid in GRIDS.items():
        candidates: list[Params] = list(itertools.product(*grid.values()))  # type: ignore[arg-type]
        values = [selection_score(scores("val", p), "f1-count") for p in candidates]
        best = candidates[int(np.argmax(values))]
        click.echo(f"{name}: chosen on validation {dict(zip(grid, best, strict=True))}; "
                   f"validation {_summary(scores('val', best))}; test {_summary(scores('test', best))}")


if __name__ == "__main__":
    main()
