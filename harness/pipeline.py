"""The main job: pretrain -> fine-tune on a label budget -> evaluate on test -> result record.

Everything here is fixed by the harness and identical for every method; the method only shapes
pretraining. The pretrained encoder is cached under a key of everything that decides it, so the
budgets and protocols of a sweep share one pretraining.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load, save

from harness import __version__
from harness.context import Context, RunRequest
from harness.data.base import stable_hash
from harness.data.cache import cache_root
from harness.data.io import locked, write_bytes_atomic, write_text_atomic
from harness.data.sample import Sample
from harness.data.splits import MAX_SEED, Budget, SplitManifest, budget_slug
from harness.errors import HarnessError
from harness.evaluation.predict import maps_at, score_predictions, score_split
from harness.evaluation.selection import CRITERIA, selection_score
from harness.evaluation.tuning import Tuning, tune_postprocessing
from harness.methods.base import SSLMethod
from harness.methods.registry import MethodEntry, get_method
from harness.metrics import aggregate
from harness.models import Ensemble, Network
from harness.numerics import NUMERICS_VERSION
from harness.results.artifacts import INPUT_SCALING, Predictions, write_model
from harness.results.provenance import command_line, hardware, library_versions
from harness.results.record import (
    PER_IMAGE_FILE,
    RECORD_FILE,
    DatasetInfo,
    Member,
    MethodInfo,
    PretrainInfo,
    RunRecord,
    Seeds,
    Selection,
)
from harness.task.scale import SECOND_LOOK_MARGIN
from harness.training.batches import ImageStore
from harness.training.checkpoint import Checkpointing, parse_interval
from harness.training.loop import StageLog, finetune, late_loss, pretext_rule_loss, pretrain
from harness.training.runtime import (
    is_main_process,
    max_over_ranks,
    on_main_process,
    peak_memory_mb,
    world_size,
)
from harness.training.settings import TrainSettings

ENCODER_FILE = "encoder.safetensors"
META_FILE = "meta.json"
CHECKPOINT_FILE = "checkpoint.pt"


def pretrain_cache_key(entry: MethodEntry, method: SSLMethod, ctx: Context, seed: int, scale: float = 1.0) -> str:
    s = ctx.settings
    return stable_hash(
        {
            "method": entry.name,
            "config": method.config.model_dump(mode="json"),
            "plugin": [entry.plugin.distribution, entry.plugin.version],
            # a plugin's version rarely moves when its code does (an editable install, a fix): its source does
            "plugin_source": entry.plugin.source,
            "harness": __version__,
            # the package versions never move; these do when the code or the libraries change the numbers
            **_code_identity(),
            "backbone": s.backbone,
            "dataset": ctx.dataset.identity.key,
            "manifest": ctx.manifest.hash,
            "seed": seed,
            # everything that changes the numbers: on CPU the thread count does (reduction order), so
            # an encoder trained with 2 threads is never reused by a run that records 1 thread
            "device": ctx.runtime.describe(),
            "settings": s.model_dump(include={"crop_size", "pretrain_steps", "pretrain_batch", "pretrain_lr",
                                              "pretrain_weight_decay", "pretrain_betas", "warmup_fraction"}),
            # a control that pretrains on the task's targets depends on the task version too
            **({"task": s.task} if method.uses_hidden_labels else {}),
            **({"steps_factor": method.pretrain_steps_factor} if method.pretrain_steps_factor != 1 else {}),
            # an all-labelled folder pretrains on its training pool (keys of the usual case unchanged)
            **({"pool": pretraining_pool(ctx.manifest)} if pretraining_pool(ctx.manifest) != "unlabeled" else {}),
            # a folder of large particles pretrains at its budget's working resolution (keys at native pixels unchanged)
            **({"scale": scale} if scale != 1.0 else {}),
        },
        length=20,
    )


def pretraining_pool(manifest: SplitManifest) -> str:
    """The pool pretraining learns from: the unlabeled pool, or, when a folder has labelled every
    image it holds (a normal lab), the labelled training pool. Never validation or test."""
    return "unlabeled" if manifest.pools.get("unlabeled") else "train"


def pretraining_pool_store(ctx: Context, scale: float, with_targets: bool = False) -> ImageStore:
    """The pretraining pool's images read at ``scale`` (:meth:`Context.pretraining_scale`), as pretraining
    reads them (diagnostic scripts re-create a run's pretext batches with it)."""
    return ctx.store(ctx.manifest.pools[pretraining_pool(ctx.manifest)], with_targets=with_targets, scale=scale)


def check_hidden_labels(name: str, ctx: Context, pool: str) -> None:
    """A hidden-label control needs an unlabeled pool whose every image has its ground truth."""
    dataset = ctx.dataset.identity.name
    if pool != "unlabeled":
        raise HarnessError(f"method {name!r} is a control that pretrains on the unlabeled pool's hidden "
                           f"ground truth, but {dataset} has no unlabeled images")
    index = ctx.dataset.index().set_index("id")
    unlabelled = [i for i in ctx.manifest.pools[pool] if not bool(index.loc[i, "labeled"])]
    if unlabelled:
        raise HarnessError(f"method {name!r} is a control that pretrains on the unlabeled pool's hidden "
                           f"ground truth, but {len(unlabelled)} image(s) of {dataset} have no "
                           f"mask (e.g. {unlabelled[0]}): use it on an embedded dataset")


def checkpointing(path: Path, identity: str, every: str, log) -> Checkpointing:
    every_s, every_steps = parse_interval(every)
    return Checkpointing(path, identity, every_s=every_s, every_steps=every_steps, log=log)


def finetune_identity(request: RunRequest, ctx: Context, entry: MethodEntry, method: SSLMethod,
                      pretrain_key: str | None, budget_ids: list[str], seed: int | None = None) -> str:
    """What a fine-tuning stage computes, as a key: its checkpoint is resumed only by the same.
    ``seed``: an ensemble member's (default: the run's). A member's network does not depend on how
    many members its run has, so the ensemble size is not in the key: member 0 is the one network
    a run of the same seed without ``--ensemble`` trains, and resumes from its checkpoint."""
    return stable_hash({"pretrain": pretrain_key, "method": entry.name,
                        "config": method.config.model_dump(mode="json"), "dataset": ctx.dataset.identity.key,
                        "manifest": ctx.manifest.hash, "budget": budget_ids,
                        "seed": request.seed if seed is None else seed, "protocol": request.protocol,
                        "settings": ctx.settings.model_dump(mode="json", exclude={"ensemble"}),
                        "device": ctx.runtime.describe(), "harness": __version__, **_code_identity()},
                       length=20)


def _code_identity() -> dict[str, Any]:
    """What besides the inputs decides a cached encoder's or checkpoint's numbers: the numerics
    version (bumped by any change to the code that moves a number) and the libraries' versions."""
    return {"numerics": NUMERICS_VERSION, "libraries": library_versions()}


def obtain_encoder(entry: MethodEntry, method: SSLMethod, ctx: Context, seed: int, progress: bool, log,
                   checkpoint_every: str = "10m", scale: float = 1.0):
    """Transferred encoder weights from the cache, or from a new pretraining that fills it.

    ``scale``: the factor pretraining reads its pool at (1: native pixels); the segment task passes
    its budget's working resolution (:meth:`Context.pretraining_scale`)."""
    if not method.pretrains:
        return None, PretrainInfo(cache_key=None, reused_cache=False, steps=0, final_loss=None), 0.0
    pool = pretraining_pool(ctx.manifest)
    if method.uses_hidden_labels:
        check_hidden_labels(entry.name, ctx, pool)
    if pool != "unlabeled":
        log(f"pretraining: the unlabeled pool is empty, so {entry.name} pretrains on the "
            f"{len(ctx.manifest.pools[pool])} images of the labelled training pool (never validation or test; "
            "their labels are not used)")
    if scale != 1.0:
        log(f"pretraining: the budget's median particle diameter asks for the working resolution {scale:g}, so "
            f"{entry.name} pretrains on its pool resampled by {scale:g}, as fine-tuning sees the images")
    key = pretrain_cache_key(entry, method, ctx, seed, scale)
    stated_scale = scale if scale != 1.0 else None  # records state native pixels as None, as before folder-7
    name = f"{entry.name}-{key}"
    directory = cache_root() / "pretrained" / name
    with contextlib.ExitStack() as hold:
        # one process pretrains an encoder at a time (two sweep lanes, or budgets of one seed run side by
        # side); the other waits and reuses it. torchrun's ranks pretrain it together.
        if world_size() == 1:
            lock = directory.with_name(f".{name}.lock")
            if not hold.enter_context(locked(lock, wait=False)):
                log(f"pretraining: another process is pretraining {name}; waiting to reuse its encoder")
                hold.enter_context(locked(lock))
        cached = read_cached_encoder(directory)
        if isinstance(cached, str):
            log(f"pretraining: cached encoder {name} is damaged ({cached}); training it again")
            cached = None
        # under torchrun the ranks reuse or pretrain together (every rank takes part in this all-reduce):
        # a rank without the encoder (a cache on another node's disk) would pretrain alone while the
        # others wait in DDP's collectives
        if max_over_ranks(int(cached is None))[0] and cached is not None:
            log(f"pretraining: another rank has no cached {name}; every rank trains it again")
            cached = None
        if cached is not None:
            state, meta = cached
            log(f"pretraining: reusing cached encoder {name} (trained {meta['created']})")
            if "reference_loss" in meta:
                reference = meta["reference_loss"]
            else:  # cached before runs kept the rule, which needs no trained weights: score it now
                reference = pretext_rule_loss(method, pretraining_pool_store(ctx, scale), ctx.settings, ctx.runtime,
                                              seed)
            info = PretrainInfo(cache_key=key, reused_cache=True, steps=meta["steps"], final_loss=meta["final_loss"],
                                pool=pool, late_loss=late_loss(meta.get("losses") or []), reference_loss=reference,
                                scale=stated_scale,
                                # needs the whole trained module, which no cache keeps: None for older caches
                                held_out_loss=meta.get("held_out_loss"))
            return state, info, 0.0
        start = time.perf_counter()
        store = pretraining_pool_store(ctx, scale, with_targets=method.uses_hidden_labels)
        resumable = checkpointing(directory / CHECKPOINT_FILE, key, checkpoint_every, log)
        state, stage = pretrain(method, store, ctx.settings, ctx.runtime, seed, progress, checkpoint=resumable)
        elapsed = time.perf_counter() - start
        final = stage.losses[-1] if stage.losses else None
        if is_main_process():  # one writer; a second process would only race for the same bytes
            payload = save(state, metadata={"method": entry.name, "key": key})
            meta = {"created": _now(), "steps": len(stage.losses), "final_loss": final,
                    "reference_loss": stage.reference_loss, "held_out_loss": stage.held_out_loss,
                    "losses": stage.losses, "seconds": elapsed, "device": ctx.runtime.describe(),
                    "sha256": hashlib.sha256(payload).hexdigest()}
            # meta first: an encoder file is never there without the digest that vouches for it
            write_text_atomic(directory / META_FILE, json.dumps(meta, indent=1))
            write_bytes_atomic(directory / ENCODER_FILE, payload)
        resumable.clear()  # only now: a stop before the encoder was stored resumes from the checkpoint
        log(f"pretraining: cached encoder as {name}")
        info = PretrainInfo(cache_key=key, reused_cache=False, steps=len(stage.losses), final_loss=final, pool=pool,
                            scale=stated_scale,
                            late_loss=late_loss(stage.losses), reference_loss=stage.reference_loss,
                            held_out_loss=stage.held_out_loss, resumed_from_step=stage.resumed_from_step)
        return state, info, elapsed


def read_cached_encoder(directory: Path) -> tuple[dict[str, torch.Tensor], dict] | str | None:
    """A cached encoder and its meta; None when there is none; the reason when it is damaged
    (truncated or edited weights, unreadable meta, non-finite values), so the caller trains anew."""
    path = directory / ENCODER_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads((directory / META_FILE).read_text())
        if not isinstance(meta, dict) or not {"created", "steps", "final_loss"} <= meta.keys():
            return f"{META_FILE} lacks its fields"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"{META_FILE} unreadable: {type(err).__name__}"
    payload = path.read_bytes()
    if "sha256" in meta and hashlib.sha256(payload).hexdigest() != meta["sha256"]:
        return f"{ENCODER_FILE} does not match its sha256 in {META_FILE}"
    try:
        state = load(payload)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for every kind of damage
        return f"{ENCODER_FILE} unreadable: {type(err).__name__}"
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        return f"{ENCODER_FILE} holds non-finite weights"
    return state, meta


def record_settings(settings: TrainSettings, pretrains: bool) -> dict:
    """The training settings a record states. Distributed pretraining (torchrun) trains on world
    size x the batch, a different recipe, so the process count joins the settings when above 1
    and the method pretrains: the leaderboard then never pools such a record with single-process
    ones, nor takes it for the same cell. Single-process records are unchanged."""
    stated = settings.stated()
    if pretrains and world_size() > 1:
        stated["pretrain_world_size"] = world_size()
    return stated


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Fitted:
    """A trained downstream model and how it came to be: everything before the test split."""

    net: Network
    stage: StageLog
    tuning: Tuning
    pretrain: PretrainInfo
    timings_s: dict[str, float]
    # fine-tuning's checkpoints (one per ensemble member), left until the record is written (a stop while
    # tuning or testing then resumes from them instead of fine-tuning from step 0); whoever uses the model
    # clears them
    checkpoints: tuple[Checkpointing, ...] = ()
    # an ensemble's members (settings.ensemble > 1), member 0 first; empty for one network
    members: tuple[Member, ...] = ()
    # the stages a checkpoint resumed, and from which step (RunRecord.resumed_from); None: none did
    resumed_from: dict[str, int] | None = None

    def clear_checkpoints(self) -> None:
        for checkpoint in self.checkpoints:
            checkpoint.clear()


def member_seeds(seed: int, ensemble: int) -> list[int]:
    """The fine-tuning seeds of a run's networks: the run's own first, so that member 0 is the network a
    run without ``--ensemble`` trains; the others hashed from (seed, member) into [0, 2^32), where the
    small seeds runs are given do not reach (so seeds 0, 1, 2 of a sweep share no member)."""
    return [seed] + [int(stable_hash({"seed": seed, "ensemble_member": k}, length=8), 16) % (MAX_SEED + 1)
                     for k in range(1, ensemble)]


def fit(request: RunRequest, ctx: Context, entry: MethodEntry, method: SSLMethod, log) -> Fitted:
    """Pretrain (or reuse the cached encoder), fine-tune on the budget with model selection on
    validation, and tune the post-processing on validation. The test split is not touched."""
    budget_ids = ctx.budget_ids(Budget.parse(request.budget))
    if method.pretrains:
        ctx.check_leakage(request.allow_leakage, log, request.progress)
    encoder_state, pretrain_info, pretrain_s = obtain_encoder(
        entry, method, ctx, request.seed, request.progress, log, request.checkpoint_every,
        ctx.pretraining_scale(budget_ids))

    start = time.perf_counter()
    val_ids = ctx.manifest.pools["val"]
    if not val_ids:
        raise HarnessError("the validation pool is empty: model selection needs validation images")

    scale, diameter, second_look = ctx.resolution(budget_ids)
    if second_look is not None:  # every resampling run (the working scale never enlarges)
        log(f"working resolution: the budget's median particle diameter is {diameter:.1f} px, so every image is "
            f"resampled by {scale:g}, and further where its particles come out larger than "
            f"{SECOND_LOOK_MARGIN:g} x {second_look:g} px (see harness.task.scale)")

    def validate(net) -> float:
        # model selection on validation images, by the settings' criterion (harness.evaluation.selection)
        scores, _ = score_split(net, ctx.dataset, val_ids, ctx.runtime, ctx.task, scale=scale,
                                second_look_px=second_look, desc="validate",
                                progress=False, look=maps_at)  # plain maps: the task's TTA is for the end
        return selection_score(scores, ctx.settings.selection)

    store = ctx.store(budget_ids, with_targets=True, scale=scale, second_look_px=second_look)
    nets, stages, checkpoints = [], [], []
    seeds = member_seeds(request.seed, ctx.settings.ensemble)
    for k, seed in enumerate(seeds):
        if len(seeds) > 1:
            log(f"fine-tuning ensemble member {k + 1} of {len(seeds)} (seed {seed})")
        identity = finetune_identity(request, ctx, entry, method, pretrain_info.cache_key, budget_ids, seed)
        checkpoints.append(checkpointing(cache_root() / "checkpoints" / f"finetune-{identity}.pt", identity,
                                         request.checkpoint_every, log))
        # each member is selected on validation alone; the ensemble is read as one from tuning on
        net, stage = finetune(encoder_state, store, validate, ctx.settings, ctx.runtime, seed, request.protocol,
                              request.progress, checkpoint=checkpoints[-1])
        nets.append(net)
        stages.append(stage)
    fitted_net: Network = Ensemble(nets) if len(nets) > 1 else nets[0]
    members = tuple(Member(seed=seed, **_selected(stage)) for seed, stage in zip(seeds, stages, strict=True)) \
        if len(nets) > 1 else ()
    finetune_s = time.perf_counter() - start
    start = time.perf_counter()
    tuning = tune_postprocessing(fitted_net, ctx.dataset, val_ids, ctx.runtime, ctx.task, scale, diameter,
                                 ctx.settings.selection, second_look)
    log(f"post-processing tuned on validation: {tuning.params} ({ctx.settings.selection} {tuning.score:.3f}, "
        f"defaults {tuning.default_score:.3f})")
    return Fitted(net=fitted_net, stage=stages[0], tuning=tuning, pretrain=pretrain_info,
                  timings_s={"pretrain": round(pretrain_s, 3), "finetune": round(finetune_s, 3),
                             "tune": round(time.perf_counter() - start, 3)}, checkpoints=tuple(checkpoints),
                  members=members, resumed_from=resumed_stages(pretrain_info, stages))


def resumed_stages(pretrain: PretrainInfo, finetune: Sequence[StageLog] = ()) -> dict[str, int] | None:
    """What a record states of the stages a checkpoint resumed (RunRecord.resumed_from): pretraining, and
    fine-tuning's one network or each member of an ensemble (numbered from 1, as the run's log numbers them)."""
    steps = {"pretrain": pretrain.resumed_from_step}
    if len(finetune) == 1:
        steps["finetune"] = finetune[0].resumed_from_step
    else:
        steps.update({f"finetune member {k}": stage.resumed_from_step for k, stage in enumerate(finetune, start=1)})
    resumed = {stage: step for stage, step in steps.items() if step is not None}
    return resumed or None


def _selected(stage: StageLog) -> dict[str, Any]:
    """What a record states of a fine-tuning stage's model selection."""
    return {"best_step": stage.best_step, "best_score": stage.best_score, "stopped_early": stage.stopped_early,
            "finetune_steps_run": len(stage.losses)}


def reference_labels(method: SSLMethod, ctx: Context, budget_ids: list[str]) -> Callable[[Sample], np.ndarray]:
    """How a reference row (oracle, classical) labels an image: itself, no training, at the working
    resolution a trained method's run on this budget would read it (harness.methods.reference)."""
    scale, _, second_look = ctx.resolution(budget_ids)
    predict = method.predict  # type: ignore[attr-defined]  # role "reference": harness.methods.reference
    return lambda sample: predict(sample, ctx.task, scale, second_look)


def score_reference(method: SSLMethod, ctx: Context, budget_ids: list[str], progress: bool,
                    keep: Callable[[Sample, np.ndarray], None] | None = None) -> tuple[list, list[str]]:
    """A reference row's test scores (see :func:`reference_labels`)."""
    return score_predictions(ctx.dataset, ctx.manifest.pools["test"], reference_labels(method, ctx, budget_ids),
                             desc=f"test ({method.name})", progress=progress and is_main_process(), keep=keep)


def run_one(request: RunRequest, ctx: Context | None = None, log=print) -> RunRecord:
    """Run one grid cell and write its record; returns the record."""
    log = on_main_process(log)
    if request.out is not None and (request.out / RECORD_FILE).exists() and not request.overwrite:
        raise HarnessError(f"{request.out} already holds a run record ({RECORD_FILE}); choose another --out, "
                           "or remove it to run again")
    budget = Budget.parse(request.budget)
    entry = get_method(request.method)
    method = entry.cls(request.method_config)
    ctx = ctx or Context(request)
    ctx.check_folder(request.allow_leakage, log, request.progress)
    if request.task == "classify":
        from harness.classify import run_classify
        return run_classify(request, ctx, entry, method, budget, log)
    budget_ids = ctx.budget_ids(budget)
    if ctx.runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.runtime.device)
    predictions = Predictions()
    if method.role == "reference":
        fitted = None
        start = time.perf_counter()
        per_image, scales = score_reference(method, ctx, budget_ids, request.progress, keep=predictions.keep)
    else:
        fitted = fit(request, ctx, entry, method, log)
        start = time.perf_counter()
        per_image, scales = score_split(fitted.net, ctx.dataset, ctx.manifest.pools["test"], ctx.runtime,
                                        ctx.task, fitted.tuning.params, fitted.tuning.working_scale,
                                        fitted.tuning.second_look_px, desc="test",
                                        progress=request.progress, keep=predictions.keep)
    report = aggregate(per_image, scales, seed=request.split_seed)
    evaluate_s = time.perf_counter() - start
    stage = fitted.stage if fitted else StageLog()

    record = RunRecord(
        **common_record_fields(request, ctx, entry, method, budget, budget_ids),
        settings=record_settings(ctx.settings, method.pretrains),
        pretrain=fitted.pretrain if fitted else PretrainInfo(cache_key=None, reused_cache=False, steps=0,
                                                             final_loss=None),
        postprocess=fitted.tuning.model_dump(mode="json") if fitted else
        method.stated_postprocess(ctx.task, *ctx.resolution(budget_ids)),  # type: ignore[attr-defined]
        selection=Selection(criterion=CRITERIA[ctx.settings.selection], **_selected(stage)),
        members=list(fitted.members) if fitted and fitted.members else None,
        metrics=report,
        test_length_scales=list(scales),
        headline=report.headline(),
        timings_s={**(fitted.timings_s if fitted else {}), "evaluate": round(evaluate_s, 3)},
        resumed_from=fitted.resumed_from if fitted else None,
    )

    def keep_for_people(out: Path) -> None:
        predictions.write(out)
        if fitted is not None:
            write_model(out, fitted.net.state_dict(), {
                "task": ctx.task.version, "backbone": ctx.settings.backbone, "method": entry.name,
                "record": record.run_id, "protocol": request.protocol, "num_outputs": ctx.task.num_outputs,
                "in_chans": 1, "input_scaling": INPUT_SCALING, "working_scale": fitted.tuning.working_scale,
                "second_look_px": fitted.tuning.second_look_px,
                # the labelled particles' size it learnt from (native px): predict compares images with it
                "budget_median_diameter_px": fitted.tuning.budget_median_diameter_px,
                "postprocess": dict(fitted.tuning.params), "harness": __version__, "numerics": NUMERICS_VERSION,
                "dataset": record.dataset.key,
                # stated only for an ensemble, so that cards of one network read as before
                **({"ensemble": len(fitted.members)} if fitted.members else {})})

    write_run(request, record, [s.model_dump(mode="json") for s in per_image], log, extras=keep_for_people)
    if fitted is not None:
        fitted.clear_checkpoints()  # the record is written
    return record


def common_record_fields(request: RunRequest, ctx: Context, entry: MethodEntry, method: SSLMethod, budget: Budget,
                         budget_ids: list[str]) -> dict[str, Any]:
    """The fields every task's record fills alike: identity, method, data, seeds, machine, provenance."""
    config = method.config.model_dump(mode="json")
    identity = ctx.dataset.identity
    created = _now()
    run_id = stable_hash({"request": request.model_dump(mode="json",
                                                        exclude={"out", "progress", "overwrite", "command"}),
                          "created": created}, length=12)
    return {
        "run_id": run_id,
        "created": created,
        "method": MethodInfo(name=entry.name, plugin=entry.plugin.name, distribution=entry.plugin.distribution,
                             version=entry.plugin.version, config=config, config_hash=stable_hash(config),
                             transfers=method.transfers, role=method.role),
        "backbone": ctx.settings.backbone,
        "dataset": DatasetInfo(name=identity.name, version=identity.version, params_hash=identity.params_hash,
                               key=identity.key, profile=request.profile, manifest_hash=ctx.manifest.hash,
                               pool_sizes={k: len(v) for k, v in ctx.manifest.pools.items()}),
        "budget": budget.text,
        "budget_images": len(budget_ids),
        "protocol": request.protocol,
        "seeds": Seeds(split=request.split_seed, data=request.data_seed, train=request.seed),
        "peak_memory_mb": round(peak_memory_mb(ctx.runtime), 1),
        "device": ctx.runtime.describe(),
        "hardware": hardware(),
        "versions": {"harness": __version__, **library_versions()},
        "git": ctx.git,
        "numerics": NUMERICS_VERSION,
        "command": request.command if request.command is not None else command_line(),
        "accepted_leaks": list(ctx.accepted_leaks),
    }


def write_run(request: RunRequest, record: RunRecord, per_image: list[dict], log,
              extras: Callable[[Path], None] | None = None) -> Path:
    """Write a run folder (``extras(out)``: predictions and model; the per-image rows; the record last)
    and say where; returns the folder."""
    out = request.out or default_run_dir(record)
    if is_main_process():  # record.json last: it never stands without its per_image.json and the rest
        if extras is not None:
            extras(out)
        write_text_atomic(out / PER_IMAGE_FILE, json.dumps(per_image, indent=1) + "\n")
        record.write(out)
    head = record.headline
    log(f"test headline: {head.metric} = {_num(head.value)} {_ci(head.ci95)}, "
        f"{head.companion_metric} = {_num(head.companion_value)} {_ci(head.companion_ci95)} "
        f"over {head.n_images} images")
    log(f"record written to {out / 'record.json'}")
    return out


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ci(interval) -> str:
    return "[n/a]" if not interval or None in interval else f"[{_num(interval[0])}, {_num(interval[1])}]"


def default_run_dir(record: RunRecord) -> Path:
    budget = budget_slug(record.budget)
    name = f"{record.method.name}-{budget}-{record.protocol}-seed{record.seeds.train}-{record.run_id}"
    return Path("runs") / record.dataset.name / name
