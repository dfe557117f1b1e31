"""Diagnostic: read the average of several networks' maps (an ensemble of fine-tuning seeds)?

Not part of the task. On EMPS validation each record's mean count error is carried by one or two
images with few particles that its network shatters, and which image shatters changes with the
fine-tuning seed. Networks of the same task, working resolution and look, fine-tuned with different
seeds, are read here as one: each image's maps are the mean of every network's maps (each through
the task's own final look, its 8 flips and quarter turns where it has them), the second look is
sized from the averaged maps, and the post-processing thresholds are tuned for the average on
validation with the runs' own criterion over the task's grid, exactly as a run tunes its own. The
test split is read only with ``--split test``, with the thresholds tuned on validation. docs/emps.md
states what it was declared to decide and what it gave.

    python scripts/ensemble_look.py --run RUN_A --run RUN_B --dataset FOLDER [--split val] [--out rows.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from harness.data.splits import make_manifest
from harness.evaluation.predict import score_split
from harness.evaluation.tuning import tune_postprocessing
from harness.models import Ensemble
from harness.training.runtime import resolve_runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a file or loaded by path in tests
from _split_diagnostic import load_run, open_run_folder

# what members must share to be averaged: the maps mean the same thing at the same resolution
SHARED = ("task", "working_scale", "second_look_px", "selection")


def shared_reading(run_dirs: list[Path], stated: list[dict[str, Any]]) -> dict[str, Any]:
    """The reading every member states (``stated[i]``: run i's task, working scale, look target and
    selection criterion); a member that states another is refused in one line."""
    first = stated[0]
    for run_dir, own in zip(run_dirs[1:], stated[1:], strict=True):
        for key in SHARED:
            if own[key] != first[key]:
                raise click.UsageError(f"--run {run_dir}: {key} {own[key]!r}, but {run_dirs[0]} has {first[key]!r}; "
                                       "only networks read the same way can be averaged")
    return first


def read_split(run_dirs: list[Path], dataset: str, split: str, split_seed: int, progress: bool) -> dict[str, Any]:
    """The thresholds tuned for the average on validation, and each image of ``split`` read with them."""
    torch.set_num_threads(1)
    runtime = resolve_runtime("cpu")
    nets, stated = [], []
    for run_dir in run_dirs:
        net, card, task, scale, _params = load_run(run_dir)
        settings = json.loads((run_dir / "record.json").read_text())["settings"]
        nets.append(runtime.prepare(net).eval())
        stated.append({"task": task.version, "working_scale": scale, "second_look_px": card.get("second_look_px"),
                       "selection": settings["selection"]})
    reading = shared_reading(run_dirs, stated)
    ensemble = Ensemble(nets)  # read as `harness run --ensemble K` reads its members (harness.models.ensemble)
    folder = open_run_folder(run_dirs[0], dataset)
    pools = make_manifest(folder, split_seed).pools
    # tuned and scored by the run's own functions (a --split val reading computes validation's maps twice)
    tuning = tune_postprocessing(ensemble, folder, pools["val"], runtime, task, reading["working_scale"], None,
                                 reading["selection"], reading["second_look_px"])
    scores, _ = score_split(ensemble, folder, pools[split], runtime, task, tuning.params, reading["working_scale"],
                            reading["second_look_px"], desc=split, progress=progress)
    rows = [{"id": i, "count": c.count_rel_error, "f1": c.f1 or 0.0, "true": c.n_true, "found": c.n_pred}
            for i, c in zip(pools[split], scores, strict=True)]
    return {"runs": [str(r) for r in run_dirs], "split": split, "params": dict(tuning.params),
            "tuned_score": tuning.score, "rows": rows}


def report(reading: dict[str, Any]) -> list[str]:
    rows = reading["rows"]
    count = np.array([r["count"] for r in rows], dtype=float)
    worst = np.sort(count)[::-1]
    return [f"{len(reading['runs'])} networks averaged; thresholds tuned on validation: {reading['params']} "
            f"(criterion {reading['tuned_score']:.3f})",
            f"{reading['split']}: {len(rows)} images; mean count error {count.mean():.3f} "
            f"(median {np.median(count):.3f}; worst {', '.join(f'{w:.2f}' for w in worst[:3])}; "
            f"without the 3 worst {worst[3:].mean():.3f}), F1 {np.mean([r['f1'] for r in rows]):.3f}; "
            f"found {sum(r['found'] for r in rows)} of {sum(r['true'] for r in rows)}"]


@click.command(help="Read the average of several networks' maps (see the module docstring).",
               context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--run", "run_dirs", type=click.Path(path_type=Path, file_okay=False, exists=True), multiple=True,
              required=True, help="A run folder; give two or more, made with the same task and look.")
@click.option("--dataset", required=True, help="The folder dataset the runs were made on.")
@click.option("--split", type=click.Choice(["val", "test"]), default="val", show_default=True,
              help="Read test only once the average has passed on validation.")
@click.option("--split-seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Also write the reading as JSON.")
def main(run_dirs: tuple[Path, ...], dataset: str, split: str, split_seed: int, out: Path | None) -> None:
    if len(run_dirs) < 2:
        raise click.UsageError("give --run at least twice: an average of one network is that network")
    reading = read_split(list(run_dirs), dataset, split, split_seed, True)
    if out is not None:
        out.write_text(json.dumps(reading))
    click.echo("\n".join(report(reading)))


if __name__ == "__main__":
    main()
