"""``harness methods``, ``harness run`` and ``harness sweep``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import click
from tabulate import tabulate

from harness.cli.data import SEED, SEED_LIST, data_seed_option, profile_option, split_list, split_seed_option
from harness.errors import HarnessError
from harness.plugins.hookspecs import HOOKSPEC_VERSION
from harness.plugins.manager import failure_lines, plugin_state

if TYPE_CHECKING:
    from harness.metrics import MetricsReport
    from harness.metrics.classification import ClassificationReport


@click.command("methods")
def methods() -> None:
    """List every SSL method with its plugin, distribution, version and description.

    Role: "method" entries compete in the tables; a "control" (supervised) and the "reference" rows
    (oracle, classical) are shown beside them and never ranked. A plugin that fails to import, or whose
    hook raises or contributes a bad class or a name already taken, is reported on stderr and the others
    keep working; `harness -p no:NAME methods` (or HARNESS_DISABLE_PLUGINS=a,b) blocks plugins by entry-point name."""
    from harness.methods.registry import available_methods

    rows = [
        {"method": e.name, "role": e.cls.role, "plugin": e.plugin.name, "distribution": e.plugin.distribution,
         "version": e.plugin.version, "transfers": e.cls.transfers, "description": e.cls.description}
        for e in sorted(available_methods().values(), key=lambda e: e.name)
    ]
    click.echo(tabulate(rows, headers="keys"))
    for line in failure_lines(plugin_state()):
        click.echo(line, err=True)
    click.echo(f"\nhookspec version {HOOKSPEC_VERSION}")


@click.command("backbones")
def backbones() -> None:
    """List every backbone `--backbone` accepts: built-in ones and those plugins contribute."""
    from harness.models.backbones import resolve_backbones

    specs, refused = resolve_backbones()
    rows = [{"backbone": name, "timm model": spec.timm_name, "about": spec.note} for name, spec in specs.items()]
    click.echo(tabulate(rows, headers="keys"))
    for plugin, name, timm_name in refused:
        click.echo(f"plugin {plugin!r}: backbone {name!r} ({timm_name}) ignored: the name is already taken", err=True)
    for line in failure_lines(plugin_state()):
        click.echo(line, err=True)


def parse_config(items: tuple[str, ...]) -> dict:
    """``--config key=value`` pairs; values are read as JSON when they parse, else as text."""
    config = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HarnessError(f"--config {item!r} is not key=value")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value
    return config


def _check_interval(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from harness.training.checkpoint import parse_interval

    try:
        parse_interval(value)
    except HarnessError as err:
        raise click.BadParameter(str(err)) from None
    return value


def _check_crop(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    from harness.training.settings import CROP_MULTIPLE

    if value is not None and value % CROP_MULTIPLE:
        nearest = CROP_MULTIPLE * max(1, round(value / CROP_MULTIPLE))
        raise click.BadParameter(f"{value} is not a multiple of {CROP_MULTIPLE} (try {nearest})")
    return value


def common_run_options(func):
    options = [
        click.option("--dataset", default="synthetic-sem", show_default=True,
                     help="Embedded dataset name (see `harness datasets`) or a folder path."),
        click.option("--backbone", default=None,
                     help="Encoder backbone, see `harness backbones` (default: convnextv2_atto)."),
        profile_option, data_seed_option, split_seed_option,
        click.option("--task", type=click.Choice(["segment", "classify"]), default="segment", show_default=True,
                     help="segment: particle instance segmentation (the benchmark's task); classify: one class per "
                          "image from the frozen encoder, a linear probe and kNN (datasets with image classes: "
                          "synthetic-nanowire; budgets like 4/class)."),
        click.option("--task-version", default=None, metavar="VERSION",
                     help="The segment task's version instead of the default: distmap-v3 (default: foreground + "
                          "distance map, h-maxima seeds, a minimum share of the largest particle, test-time flips "
                          "and turns), distmap-v2 (the same training, plain seeds; release v10), flows-v1 "
                          "(foreground + Cellpose flow field, pixels follow the flows to their particle's centre; "
                          "closed on EMPS, docs/emps.md), band-v1 (background / interior / 2 px boundary band, the "
                          "loss weighted at the gaps between particles as U-Net's; closed on EMPS too), "
                          "3class-v1 (history). Stated in the record, "
                          "whose leaderboard tables it never shares."),
        click.option("--protocol", type=click.Choice(["finetune", "frozen"]), default=None,
                     help="finetune (segment's default): the whole network trains; frozen: the pretrained encoder "
                          "stays fixed (classify is always frozen)."),
        click.option("--device", default="auto", show_default=True,
                     help="auto (GPU with bf16 + channels_last when present), cpu or cuda[:N]."),
        click.option("--config", "config_items", multiple=True, metavar="KEY=VALUE",
                     help="Method config field, repeatable (see the method's documentation)."),
        click.option("--allow-leakage", is_flag=True,
                     help="Run even when pretraining images duplicate validation/test images."),
        click.option("--connectivity", type=click.Choice(["4", "8"]), default="8", show_default=True,
                     help="Folder datasets: pixel connectivity that turns binary masks into particles."),
        click.option("--crop-bottom", type=click.IntRange(min=0), default=None,
                     help="Folder datasets: rows of instrument data bar at the bottom of every image."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="CPU threads for torch (default: torch's choice, the cores). On a machine shared with "
                          "other work, 1 keeps a run from stalling; the count is recorded with the device."),
        click.option("--pretrain-steps", type=click.IntRange(min=0), default=None,
                     help="Pretraining steps instead of the profile's (stated in the record's settings, so such "
                          "records never share a table with the profile's)."),
        click.option("--finetune-steps", type=click.IntRange(min=1), default=None,
                     help="Exactly this many fine-tuning steps (no early stop before them) instead of the "
                          "profile's budget-set schedule; stated in the record's settings likewise."),
        click.option("--crop-size", type=click.IntRange(min=32), default=None, callback=_check_crop,
                     help="Training crops (pretraining and fine-tuning) of N x N pixels, a multiple of 32, instead of "
                          "the profile's (quick: 128): more context per crop at more compute per step; stated in "
                          "the record's settings likewise."),
        click.option("--finetune-batch", type=click.IntRange(min=1), default=None,
                     help="Crops per fine-tuning step instead of the profile's (quick: 8); stated likewise."),
        click.option("--ensemble", type=click.IntRange(min=1), default=None, metavar="K",
                     help="Fine-tune K networks from the same pretrained encoder, each from its own seed (the first "
                          "is the run's seed), and read them as one: their maps averaged before post-processing, "
                          "thresholds tuned for the average. K x the fine-tuning and reading time; stated in the "
                          "record's settings likewise, and the model folder keeps all K."),
        click.option("--checkpoint-every", default="10m", show_default=True, metavar="INTERVAL",
                     callback=_check_interval,
                     help="Checkpoint pretraining and fine-tuning every INTERVAL (10m, 90s, 2h, 500steps, off), "
                          "and on SIGTERM/SIGINT; the same command again resumes. Never changes the numbers."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("run")
@click.option("--method", required=True, help="SSL method (see `harness methods`); `none` = no pretraining.")
@click.option("--budget", required=True,
              help="Label budget: 1%, 10%, 100%, an image count like 8, or per class like 4/class.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Training seed.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Run folder for record.json (default: runs/DATASET/...).")
@common_run_options
def run(method, budget, seed, out, dataset, backbone, profile, data_seed, split_seed, task, task_version, protocol,
        device, config_items, allow_leakage, connectivity, crop_bottom, threads, pretrain_steps, finetune_steps,
        crop_size, finetune_batch, ensemble, checkpoint_every, quiet) -> None:
    """Pretrain METHOD on the unlabeled pool, fine-tune on BUDGET labels, evaluate on test.

    Example: harness run --method fcmae --budget 1%
    """
    from harness.pipeline import RunRequest, run_one
    from harness.training.runtime import on_main_process

    request = RunRequest(method=method, budget=budget, dataset=dataset, backbone=backbone, seed=seed,
                         split_seed=split_seed, data_seed=data_seed, profile=profile, task=task,
                         task_version=task_version, protocol=protocol,
                         device=device, method_config=parse_config(config_items), allow_leakage=allow_leakage,
                         connectivity=int(connectivity), crop_bottom=crop_bottom, out=out, progress=not quiet,
                         pretrain_steps=pretrain_steps, finetune_steps=finetune_steps, crop_size=crop_size,
                         finetune_batch=finetune_batch, ensemble=ensemble, threads=threads,
                         checkpoint_every=checkpoint_every)
    say = on_main_process(click.echo)
    record = run_one(request, log=say)
    say("")
    say(_report_table(record.metrics))


def _report_table(metrics: MetricsReport | ClassificationReport) -> str:
    from harness.metrics.classification import ClassificationReport

    if isinstance(metrics, ClassificationReport):
        from harness.classify import scores_table

        return scores_table(metrics)
    return metrics.table()


@click.command("sweep")
@click.option("--methods", "method_list", default=None,
              help="Comma-separated methods, e.g. none,denoise,fcmae (required unless --confirmation).")
@click.option("--confirmation", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              metavar="FILE", help="Run exactly the cells a declared confirmation names "
                                   "(leaderboard/confirmations/NAME.json): its baseline and methods, budget and seeds, "
                                   "refused unless this sweep's settings are its section's; cells already filed "
                                   "in that leaderboard are skipped.")
@click.option("--budgets", default="1%,10%,100%", show_default=True, help="Comma-separated label budgets.")
@click.option("--seeds", type=SEED_LIST, default="0,1", show_default=True,
              help="Training seeds: comma-separated, ranges allowed (0,1,2 or 6-11).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("runs"), show_default=True,
              help="Folder for the run folders and failures.")
@click.option("--force", is_flag=True, help="Run cells again that already have a record in OUT (replacing it).")
@click.option("--file-into", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="ROOT",
              help="File each cell into the leaderboard at ROOT as soon as its record is written (as `harness "
                   "leaderboard add` does; a refusal is reported and the sweep goes on), and cells of OUT that "
                   "finished before but were never filed.")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default=None,
              help="Run each (method, seed) as a submitit job: local = subprocesses on this machine, slurm = a "
                   "SLURM cluster (requeued on preemption, resuming from checkpoints). Default: in this process.")
@click.option("--partition", default=None, help="With --executor slurm: the SLURM partition.")
@click.option("--gpus-per-job", type=click.IntRange(min=0), default=None, help="With --executor: GPUs per job.")
@click.option("--cpus-per-job", type=click.IntRange(min=1), default=None, help="With --executor: CPU cores per job.")
@click.option("--time-limit", default="24h", show_default=True, metavar="DURATION",
              help="With --executor: wall-time limit per job (90m, 4h, ...); a job past it is requeued and resumes.")
@click.option("--wait/--no-wait", default=None,
              help="With --executor: wait for the jobs and print the table (default: wait for local, not for slurm).")
@click.option("--max-jobs", type=click.IntRange(min=1), default=None,
              help="With --executor local: at most N jobs at once, the next started as one ends (default: all "
                   "at once). On a machine with C cores, N jobs with --threads C/N each.")
@common_run_options
def sweep(method_list, confirmation, budgets, seeds, out, force, file_into, executor, partition, gpus_per_job,
          cpus_per_job, time_limit, wait, max_jobs, dataset, backbone, profile, data_seed, split_seed, task,
          task_version, protocol, device, config_items, allow_leakage, connectivity, crop_bottom, threads,
          pretrain_steps, finetune_steps, crop_size, finetune_batch, ensemble, checkpoint_every, quiet) -> None:
    """Run the grid methods x budgets x seeds, reusing each pretraining for every budget.

    Cells run seed by seed (every method of the first seed, then the next), so a sweep stopped
    part-way leaves whole seeds for paired comparisons.

    A cell whose folder in OUT already holds a readable record is skipped (so a stopped sweep
    resumes where it was, and failed cells run again); --force runs it anew. A failing cell is
    recorded in OUT/failures/ and the sweep goes on.

    Example on a cluster: harness sweep --methods none,fcmae --seeds 0,1,2 --profile paper
    --executor slurm --partition gpu --gpus-per-job 1 --time-limit 12h
    """
    from harness.data.splits import Budget
    from harness.methods.registry import get_method
    from harness.pipeline import RunRequest
    from harness.results.provenance import command_line
    from harness.sweep import DONE_STATUSES, grid_cells, run_cells, submit
    from harness.training.checkpoint import parse_interval
    from harness.training.runtime import on_main_process

    filed: set[tuple[str, int]] = set()  # a confirmation's cells already in the leaderboard
    if confirmation is not None:
        declared = _declared_cells(
            click.get_current_context(), confirmation, profile=profile, backbone=backbone, task_version=task_version,
            protocol=protocol, overrides=dict(pretrain_steps=pretrain_steps, finetune_steps=finetune_steps,
                                              crop_size=crop_size, finetune_batch=finetune_batch,
                                              ensemble=ensemble))
        method_list, budgets, seeds = ",".join(declared.methods), declared.budget, declared.seeds
        task_version, filed = declared.task, declared.filed
    elif method_list is None:
        raise HarnessError("--methods is required (or --confirmation FILE, which names them)")
    methods_ = split_list(method_list, "methods")
    for name in methods_:  # every name before the first cell runs, not when the sweep reaches it
        get_method(name)
    budgets_ = split_list(budgets, "budgets")
    for b in budgets_:
        Budget.parse(b)
    seeds_ = list(seeds)
    if executor is None and (partition or gpus_per_job is not None or cpus_per_job is not None or wait is not None
                             or max_jobs is not None):
        raise HarnessError("--partition, --gpus-per-job, --cpus-per-job, --wait and --max-jobs need --executor "
                           "local or slurm")
    if partition and executor != "slurm":
        raise HarnessError("--partition is a SLURM option: use it with --executor slurm")
    try:
        limit_s, limit_steps = parse_interval(time_limit)
    except HarnessError:  # its message names the checkpoint interval, the other option it parses
        limit_s, limit_steps = None, None
    if limit_s is None or limit_steps is not None:
        raise HarnessError(f"--time-limit {time_limit!r} must be a duration such as 90m or 12h")
    config = parse_config(config_items)
    requests = [
        RunRequest(method=method_name, budget=budget, dataset=dataset, backbone=backbone, seed=seed,
                   split_seed=split_seed, data_seed=data_seed, profile=profile, task=task,
                   task_version=task_version, protocol=protocol, device=device,
                   method_config=config, allow_leakage=allow_leakage, connectivity=int(connectivity),
                   crop_bottom=crop_bottom, progress=not quiet and executor is None, pretrain_steps=pretrain_steps,
                   finetune_steps=finetune_steps, crop_size=crop_size, finetune_batch=finetune_batch,
                   ensemble=ensemble, threads=threads, checkpoint_every=checkpoint_every,
                   command=command_line())
        for method_name, seed, budget in grid_cells(methods_, seeds_, budgets_)
        if (method_name, seed) not in filed
    ]
    say = on_main_process(click.echo)
    if filed:
        say(f"{len(filed)} of the confirmation's cells are already filed in {confirmation.parent.parent}: "
            f"running the other {len(requests)}")
        if not requests:
            say(f"nothing to run: harness leaderboard confirm {confirmation.stem} --root {confirmation.parent.parent}")
            return
    if executor is None:
        rows = run_cells(requests, out, force, log=say, warn=lambda m: click.echo(m, err=True), file_into=file_into)
    else:
        parameters = {"timeout_min": max(1, round(limit_s / 60)), "gpus_per_node": gpus_per_job,
                      "cpus_per_task": cpus_per_job, "slurm_partition": partition, "name": "harness-sweep"}
        rows = submit(requests, out, force, executor, parameters, wait=executor == "local" if wait is None else wait,
                      log=say, max_jobs=max_jobs, file_into=file_into)
        if not rows:
            return
    say("")
    say(tabulate(rows, headers="keys", floatfmt=".4f"))
    if any(r["status"] not in DONE_STATUSES for r in rows):
        raise SystemExit(1)


class _DeclaredCells(NamedTuple):
    """A confirmation's cells as a sweep runs them: the baseline first, then the methods."""

    methods: tuple[str, ...]
    budget: str
    seeds: tuple[int, ...]
    task: str
    filed: set[tuple[str, int]]  # (method, seed) already in the leaderboard: a fresh machine must not rerun them


def _declared_cells(ctx: click.Context, path: Path, *, profile: str, backbone: str | None, task_version: str | None,
                    protocol: str | None, overrides: dict[str, int | None]) -> _DeclaredCells:
    """A confirmation's cells, after checking that the sweep would file them into the confirmation's own
    section (else they would stay missing), with those already filed there."""
    from click.core import ParameterSource

    from harness.context import setting_overrides
    from harness.methods.registry import get_method
    from harness.pipeline import record_settings
    from harness.results.boards import settings_hash
    from harness.results.confirmation import declared_cells, read_confirmation
    from harness.results.leaderboard import RecordStore
    from harness.training.settings import settings_for

    declared = read_confirmation(path.parent.parent, path.stem)
    given = [f"--{name}" for name in ("methods", "budgets", "seeds")
             if ctx.get_parameter_source("method_list" if name == "methods" else name) != ParameterSource.DEFAULT]
    if given:
        raise HarnessError(f"--confirmation {path} names the cells; drop {', '.join(given)}")
    if task_version not in (None, declared.task):
        raise HarnessError(f"--task-version {task_version}: confirmation {declared.name} is of task {declared.task}")
    if (protocol or "finetune") != declared.protocol:
        raise HarnessError(f"--protocol {protocol}: confirmation {declared.name} is of protocol {declared.protocol}")
    if declared.backbone not in (None, backbone):
        raise HarnessError(f"confirmation {declared.name} is of backbone {declared.backbone}: pass --backbone "
                           f"{declared.backbone}")
    settings = settings_for(profile, backbone=backbone, task=declared.task,
                            **setting_overrides(**overrides))
    for method in (declared.baseline, *declared.methods):  # what each cell's record will state (record_settings)
        own = settings_hash(record_settings(settings, get_method(method).cls.pretrains))
        if own != declared.settings:
            raise HarnessError(f"this sweep's settings for {method} ({own}: profile {profile}, steps, crops and "
                               f"processes as given) are not confirmation {declared.name}'s section's "
                               f"({declared.settings}); its cells would file elsewhere")
    filed = {(method, seed) for method, runs in declared_cells(declared, RecordStore(path.parent.parent).records())
             .items() for seed in runs}
    return _DeclaredCells((declared.baseline, *declared.methods), declared.budget, tuple(declared.seeds), declared.task,
                          filed)


COMMANDS = [methods, backbones, run, sweep]
