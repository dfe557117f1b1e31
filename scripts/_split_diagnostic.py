"""The command line shared by the diagnostics that read one run's split and compare rules per image
(convex_merge.py, foreground_look.py, look_rules.py): each gives its reader and its report. Also how
every diagnostic loads a run and opens the folder it was made on (ensemble_look.py, postprocess_grid.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
from scipy.stats import wilcoxon
from torch import nn

from harness.data.base import Dataset
from harness.data.registry import open_dataset
from harness.results.artifacts import load_model
from harness.results.record import RECORD_FILE, read_record
from harness.task import InstanceTask, get_task

Reader = Callable[[Path, str, str, int, bool], list[dict[str, Any]]]


RunParts = tuple[nn.Module, dict[str, Any], InstanceTask, float, dict[str, Any]]


def load_run(run_dir: Path, distmap_only: bool = False) -> RunParts:
    """A run's network, model card, task, working scale and tuned post-processing parameters. With
    ``distmap_only``, a run of another task is refused in one line (for the diagnostics that read the
    distance map and the foreground threshold)."""
    net, card = load_model(run_dir)
    task = get_task(card["task"])
    if distmap_only and not task.version.startswith("distmap-"):
        raise click.UsageError(f"--run {run_dir}: made with task {task.version}; this diagnostic reads distmap tasks")
    params = json.loads((run_dir / "record.json").read_text())["postprocess"]["params"]
    return net, card, task, float(card["working_scale"]), params


def open_run_folder(run_dir: Path, dataset: str, connectivity: int = 8) -> Dataset:
    """The folder ``dataset`` read as the run read it, or a one-line refusal: other images or masks, or
    other options (binary masks split ``connectivity``-connected where the run's command said otherwise),
    are another truth, which a diagnostic once scored the run's network against without a word."""
    record = read_record(run_dir / RECORD_FILE)
    folder = open_dataset(dataset, profile=record.dataset.profile, seed=record.seeds.data, connectivity=connectivity)
    if folder.identity.params_hash != record.dataset.params_hash:  # the content and options, not the harness's reading
        raise click.UsageError(f"--dataset {dataset}: not the folder the run read ({record.dataset.key}), or read with "
                               "other options than its command's (--connectivity)")
    return folder


def paired(own: np.ndarray, base: np.ndarray) -> tuple[float, float, int, int]:
    """A rule's per-image [count error, F1] rows against the baseline's, image by image: Wilcoxon's p for
    each (1.0 where nothing changed), and on how many images the count error is lower and higher."""
    p = [float(wilcoxon(own[:, k], base[:, k]).pvalue) if np.any(own[:, k] != base[:, k]) else 1.0 for k in (0, 1)]
    return p[0], p[1], int((own[:, 0] < base[:, 0]).sum()), int((own[:, 0] > base[:, 0]).sum())


def split_command(read: Reader, report: Callable[[list[dict[str, Any]]], list[str]], help: str) -> click.Command:
    """``--run RUN --dataset FOLDER [--split val|test] [--split-seed N] [--out rows.json]``: read the split
    with ``read``, optionally keep its rows as JSON, and print ``report``. Validation is the default:
    test is read only once a rule has passed on validation."""

    @click.command(help=help, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--run", "run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True)
    @click.option("--dataset", required=True, help="The folder dataset the run was made on.")
    @click.option("--split", type=click.Choice(["val", "test"]), default="val", show_default=True,
                  help="Read test only once a rule has passed on validation.")
    @click.option("--split-seed", type=int, default=0, show_default=True)
    @click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Also write the rows as JSON.")
    def main(run_dir: Path, dataset: str, split: str, split_seed: int, out: Path | None) -> None:
        rows = read(run_dir, dataset, split, split_seed, True)
        if out is not None:
            out.write_text(json.dumps(rows))
        click.echo("\n".join(report(rows)))

    return main
