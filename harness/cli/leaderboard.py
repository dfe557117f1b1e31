"""``harness leaderboard``: file run records, freeze releases, print tables, draw plots, re-run records."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from harness.cli.data import SEED_LIST, split_list
from harness.errors import HarnessError
from harness.metrics.classification import CLASSIFICATION_METRICS
from harness.metrics.scores import HEADLINE_METRIC, METRIC_NAMES


def _root_option(func):
    return click.option(
        "--root", type=click.Path(path_type=Path, file_okay=False), default=None,
        help="Leaderboard folder (default: $HARNESS_LEADERBOARD_DIR, else ./leaderboard).",
    )(func)


def _store(root: Path | None):
    from harness.results.leaderboard import RecordStore

    return RecordStore(root)


def _release_option(func):
    return click.option("--release", default=None, metavar="vN",
                        help="Use only the records frozen in this release (hashes are checked).")(func)


#: Every metric a table can rank by: the particle metrics and the classification scores.
TABLE_METRICS = (*METRIC_NAMES, *CLASSIFICATION_METRICS)
_metric_option = click.option(
    "--metric", type=click.Choice(TABLE_METRICS), default=HEADLINE_METRIC, show_default=True,
    help="Metric to rank by (its direction comes from harness.metrics); a section of the other task shows its "
         "own headline (classification: accuracy).")
_test_option = click.option(
    "--test", "test", type=click.Choice(["auto", "seeds", "images"]), default="auto", show_default=True,
    help="Significance test of best vs runner-up: paired t over seeds, Wilcoxon over test images, "
         "or auto (seeds when both have >= 2 seeds in common, else images).")
_filters = [
    click.option("--dataset", default=None, help="Dataset name or key (default: every dataset, one section each)."),
    click.option("--budget", default=None, help="Only this label budget, as written in the records (e.g. 10%)."),
    click.option("--protocol", type=click.Choice(["finetune", "frozen"]), default=None,
                 help="Only this protocol (default: each protocol in its own section)."),
    click.option("--seeds", type=SEED_LIST, default=None, metavar="SEEDS",
                 help="Only these training seeds (0,1,2 or 6-11), e.g. a confirmation's fresh seeds alone; "
                      "reference rows, which train nothing, stay."),
]


def _with_filters(func):
    for option in reversed(_filters):
        func = option(func)
    return func


@click.group("leaderboard")
def leaderboard() -> None:
    """The versioned leaderboard: validated records with provenance, releases, tables, plots.

    Typical use: harness leaderboard add runs/sweep/*/*/ ; harness leaderboard show ;
    harness leaderboard release v1 ; harness leaderboard render
    """


@leaderboard.command("add")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_root_option
def add(runs: tuple[Path, ...], root: Path | None) -> None:
    """Validate each RUN folder (or record.json) and file it immutably under ROOT/records/.

    Every aggregate of the record (means, bootstrap CIs, pooled scores, each length-scale bin,
    the headline) is recomputed from its per_image.json; a record that disagrees is refused.
    A digest file beside each filed record tells later readers whether it was edited. A duplicate
    (same run_id, same content, or the same grid cell and seed) or a malformed record
    is refused with the reason; the other runs are still filed.
    """
    from harness.results.leaderboard import add_many

    outcomes = add_many(_store(root), runs)
    for _, target, message in outcomes:
        click.echo(message, err=target is None)
    refused = sum(1 for _, target, _ in outcomes if target is None)
    if refused:
        raise HarnessError(f"{refused} of {len(outcomes)} run(s) refused (reasons above)")


@leaderboard.command("verify")
@click.option("--seal", is_flag=True,
              help="Write the digest of records filed before digests were kept, once their numbers check out.")
@_root_option
def verify(seal: bool, root: Path | None) -> None:
    """Check every filed record: its digest, and its numbers recomputed from its per-image scores."""
    results = _store(root).verify(seal=seal)
    for path, problem in results:
        if problem:
            click.echo(f"{path}: {problem}", err=True)
    bad = sum(1 for _, problem in results if problem)
    if bad:
        raise HarnessError(f"{bad} of {len(results)} filed record(s) fail verification (reasons above)")
    click.echo(f"{len(results)} filed record(s) verified: digests hold and every aggregate recomputes")


@leaderboard.command("release")
@click.argument("name")
@_root_option
def release(name: str, root: Path | None) -> None:
    """Freeze every filed record with its sha256 as release NAME (v1, v2, ...)."""
    store = _store(root)
    manifest = store.release(name)
    n_records = sum(manifest.datasets.values())
    click.echo(f"release {name}: {n_records} record(s), {len(manifest.files)} file(s) hashed -> "
               f"{store.release_path(name)}")
    for key, count in manifest.datasets.items():
        click.echo(f"  {key}: {count}")


@leaderboard.command("show")
@_with_filters
@_metric_option
@click.option("--by", type=click.Choice(["budget", "length-scale"]), default="budget", show_default=True,
              help="budget: a ranking per budget plus the label-efficiency table; length-scale: per-bin tables.")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "html", "json"]), default="md", show_default=True)
@_test_option
@_release_option
@_root_option
def show(dataset, budget, protocol, seeds, metric, by, fmt, test, release, root) -> None:
    """Print leaderboard tables: mean ± std over seeds, seed count, rank and a significance mark.

    The cells of a declared confirmation that is not complete are held out until its last cell is filed
    (a note on stderr says how many)."""
    from harness.results.boards import build_boards
    from harness.results.confirmation import declared_confirmations, hold_pending
    from harness.results.tables import build_tables, render

    store = _store(root)
    tabled, held = hold_pending(store.select(release), declared_confirmations(store, release))
    for note in held:
        click.echo(f"note: {note}", err=True)
    boards = build_boards(tabled, dataset=dataset, budget=budget, protocol=protocol, train_seeds=seeds)
    click.echo(render(build_tables(boards, metric, by=by, budget=budget, test=test), fmt), nl=False)


@leaderboard.command("plot")
@_with_filters
@_metric_option
@click.option("--run", "run", default=None, metavar="RUN",
              help="One-run figures instead: a run folder, a record file, or a filed run_id.")
@click.option("--image", type=int, default=0, show_default=True, help="With --run: test image index for the overlay.")
@click.option("--overlay/--no-overlay", default=True, show_default=True,
              help="With --run: draw predicted outlines on the test image, from the mask a run folder keeps in "
                   "predictions/, else by rebuilding the run's model (re-trains it: a filed run keeps no masks).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("plots"), show_default=True)
@_release_option
@_root_option
def plot(dataset, budget, protocol, seeds, metric, run, image, overlay, out, release, root) -> None:
    """Figures as PNG and SVG: metric vs label budget with bands, and per-length-scale bars.

    With --run: predicted vs true particle-size histograms and predicted outlines on a test image.
    """
    from harness.results import plots
    from harness.results.boards import build_boards
    from harness.results.render import slug

    if run is not None:
        for path in _plot_run(run, image, overlay, out, root):
            click.echo(f"wrote {path}")
        return
    store = _store(root)
    for b in build_boards(store.select(release), dataset=dataset, budget=budget, protocol=protocol,
                          train_seeds=seeds):
        name = slug(b)
        written = plots.budget_curves(b, metric, out / f"{name}-{metric}-vs-budget")
        for budget_text, _ in b.budgets:
            written += plots.scale_bars(b, budget_text, metric, out / f"{name}-{metric}-per-scale-{_safe(budget_text)}")
        for path in written:
            click.echo(f"wrote {path}")


def _safe(text: str) -> str:
    from harness.data.splits import budget_slug

    return budget_slug(text)


def _resolve_run(run: str, root: Path | None):
    """(record, per-image scores or None) for a run folder, a record file, or a filed run_id."""
    from harness.results.leaderboard import read_run

    path = Path(run)
    if path.exists():
        record, _, per_image, _ = read_run(path)
        return record, per_image
    if "/" in run or run.endswith(".json"):  # meant as a path, not a run_id
        raise HarnessError(f"{run}: no such file or folder (a run folder, a record file or a filed run_id is expected)")
    filed = _store(root).find(run)
    return filed.record, filed.per_image_scores()


def _plot_run(run: str, image: int, overlay: bool, out: Path, root: Path | None) -> list[Path]:
    from harness.reproduce import rebuild_prediction
    from harness.results import plots
    from harness.results.artifacts import PREDICTIONS_DIR

    record, per_image = _resolve_run(run, root)
    title = f"{record.method.name} · budget {record.budget} · seed {record.seeds.train} (run {record.run_id})"
    written: list[Path] = []
    if per_image is None:
        click.echo(f"run {record.run_id} kept no per_image.json: no size histogram", err=True)
    else:
        written += plots.size_histogram(per_image, out / f"{record.run_id}-sizes", title)
    if overlay:
        kept = Path(run) / PREDICTIONS_DIR if Path(run).is_dir() else None
        if kept is None or not kept.is_dir():
            click.echo(f"rebuilding run {record.run_id} to predict test image {image} (re-trains the model)")
        rebuilt = rebuild_prediction(record, image, per_image, kept=kept, log=click.echo)
        if rebuilt.matches_record is False:
            click.echo(f"warning: the rebuilt model's scores on test image {image} differ from the record's",
                       err=True)
        written += plots.overlay(rebuilt.image, rebuilt.true_labels, rebuilt.pred_labels,
                                 out / f"{record.run_id}-overlay-{image}", f"{title}\ntest image {image} "
                                                                          f"({rebuilt.sample_id})")
    return written


@leaderboard.command("declare")
@click.argument("name")
@click.option("--hypothesis", required=True, help="What the test should show, in a sentence (and where it came from).")
@click.option("--dataset", required=True, help="Dataset name or key of the section.")
@click.option("--budget", required=True, help="The label budget, as the records write it (e.g. 100%).")
@click.option("--methods", "method_list", required=True, help="Comma-separated methods tested against the baseline.")
@click.option("--seeds", type=SEED_LIST, required=True, help="Fresh training seeds (6-11): none may be run yet.")
@click.option("--task", "task_version", default=None, help="Task version of the section (default: the default task).")
@click.option("--settings", default=None, help="The section's settings hash, where the dataset has several sections "
                                               "of the task (or none yet).")
@click.option("--protocol", type=click.Choice(["finetune", "frozen"]), default="finetune", show_default=True)
@_metric_option
@click.option("--baseline", default="none", show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Family-wise, Holm over the methods.")
@click.option("--backbone", default=None, help="Where a method has runs on several backbones in the section.")
@_root_option
def declare_cmd(name, hypothesis, dataset, budget, method_list, seeds, task_version, settings, protocol, metric,
                baseline, alpha, backbone, root) -> None:
    """Declare confirmation NAME before its cells run: writes ROOT/confirmations/NAME.json, stamped now.

    Refused if any declared cell (a method or the baseline at a declared seed and budget) is already
    filed, or if NAME is taken. Commit the file before starting the cells; `confirm NAME` tests it
    once they are all filed.
    """
    from harness.results.confirmation import declare
    from harness.task import DEFAULT_TASK

    path, confirmation = declare(
        _store(root), name=name, hypothesis=hypothesis, dataset=dataset, budget=budget,
        methods=split_list(method_list, "methods"), seeds=list(seeds), task=task_version or DEFAULT_TASK,
        settings=settings, protocol=protocol, metric=metric, baseline=baseline, alpha=alpha, backbone=backbone)
    click.echo(f"declared {name} at {confirmation.declared}: {confirmation.n_cells} cells -> {path}; commit it "
               "before the first cell starts")


@leaderboard.command("confirm")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md", show_default=True)
@_root_option
def confirm(name: str, fmt: str, root: Path | None) -> None:
    """Test confirmation NAME, declared in ROOT/confirmations/NAME.json before its cells ran.

    The declared methods against the baseline at the declared budget, paired over the declared
    training seeds only, Holm-corrected over the methods. While any declared cell is missing it lists
    them and tests nothing.
    """
    import dataclasses
    import json

    from harness.results.confirmation import describe, evaluate, read_confirmation

    store = _store(root)
    outcome = evaluate(read_confirmation(store.root, name), store.records())
    if fmt == "json":
        click.echo(json.dumps(dataclasses.asdict(outcome) | {"complete": outcome.complete}, indent=2,
                              default=lambda o: o.model_dump()))
    else:
        click.echo(describe(outcome), nl=False)


@leaderboard.command("render")
@click.option("--metric", "metrics", multiple=True, type=click.Choice(TABLE_METRICS),
              help="Metrics to publish, repeatable; the first is ranked per budget "
                   "(default: count_rel_error, mean_diameter_rel_error, f1).")
@click.option("--overlay", default=None, metavar="RUN_ID|best",
              help="Also rebuild this run (or the best one) to draw predicted outlines (re-trains it).")
@click.option("--image", type=int, default=0, show_default=True, help="Test image index for --overlay.")
@click.option("--site", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also write a static web site to this folder: index.html with every table and plot, each "
                   "record's JSON and overlay; no server, no external assets.")
@_test_option
@_release_option
@_root_option
def render_cmd(metrics, overlay, image, site, test, release, root) -> None:
    """Write ROOT/README.md and ROOT/plots/ from the filed records (or a release); nothing by hand."""
    from harness.reproduce import rebuild_prediction
    from harness.results.render import DEFAULT_METRICS, OverlayRequest, render_readme

    store = _store(root)
    if site is not None:
        from harness.results.site import render_site

        command = shlex.join(["harness", "leaderboard", "render", "--root", str(store.root), "--site", str(site),
                              *(["--release", release] if release else [])])
        index = render_site(store, site, command, release=release, metrics=metrics or DEFAULT_METRICS, test=test,
                            log=click.echo)
        click.echo(f"wrote {index}")
    args = ["harness", "leaderboard", "render", "--root", str(store.root)]
    for metric in metrics:
        args += ["--metric", metric]
    if overlay:
        args += ["--overlay", overlay, "--image", str(image)]
    if test != "auto":
        args += ["--test", test]
    if release:
        args += ["--release", release]
    wanted = OverlayRequest(overlay, image, rebuild_prediction) if overlay else None
    path = render_readme(store, shlex.join(args), release=release, metrics=metrics or DEFAULT_METRICS, test=test,
                         overlay=wanted, log=click.echo)
    click.echo(f"wrote {path}")


@leaderboard.command("reproduce")
@click.argument("record")
@click.option("--dataset", default=None, help="Folder path, for records of folder datasets.")
@click.option("--fresh", is_flag=True, help="Rebuild datasets and pretraining in a throw-away cache.")
@click.option("--force", is_flag=True, help="Run even when the device, data or settings differ (expect mismatches).")
@click.option("--allow-leakage", is_flag=True, help="As for `harness run`.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch; the record's device names the count it ran with.")
@click.option("--keep", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Keep the new run folder here (default: a temporary folder).")
@_root_option
def reproduce_cmd(record, dataset, fresh, force, allow_leakage, threads, keep, root) -> None:
    """Re-run RECORD's exact configuration and report whether every number matches.

    RECORD is a run folder, a record file, or a filed run_id. Exit 0 on a match, 1 on a mismatch.
    """
    from harness.reproduce import reproduce

    if threads is not None:
        import torch

        torch.set_num_threads(threads)

    original, per_image = _resolve_run(record, root)
    result = reproduce(original, per_image, dataset=dataset, allow_leakage=allow_leakage, force=force, fresh=fresh,
                       out=keep, log=click.echo)
    click.echo(result.summary())
    if keep:
        click.echo(f"new run folder: {keep}")
    if not result.matches:
        raise SystemExit(1)


COMMANDS = [leaderboard]
