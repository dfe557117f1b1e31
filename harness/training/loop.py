"""The training loops: the same optimiser, schedule, precision and logging for every method.

``pretrain`` trains a method's :class:`~harness.methods.base.PretrainModule` on unlabeled crops
and returns the weights that transfer. ``finetune`` trains the downstream segmentation network
on a label budget and keeps the state that scored best on the *validation* split, through a
``validate`` callback supplied by the caller (training never sees the test split).
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from harness.errors import HarnessError
from harness.methods.base import PretrainModule, SSLMethod
from harness.models import SegmentationNet, create_backbone
from harness.task import InstanceTask, get_task
from harness.training.batches import FinetuneBatches, ImageStore, PretrainBatches, split_item
from harness.training.checkpoint import Checkpointing, rng_states, set_rng_states, stop_signals
from harness.training.runtime import Runtime, is_main_process, max_over_ranks, rank, world_size
from harness.training.settings import TrainSettings


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then cosine decay to zero."""
    warmup = int(total_steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


@dataclass
class Optimisation:
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: list[torch.optim.lr_scheduler.LambdaLR]

    @classmethod
    def adamw(
        cls,
        groups: dict[str, list[nn.Parameter]],
        defaults: dict,
        per_group: dict[str, dict],
        total_steps: int | None,
        warmup_fraction: float = 0.0,
    ) -> Optimisation:
        """One AdamW per group (``per_group`` options override ``defaults``), with warm-up and
        cosine decay over ``total_steps``; ``total_steps=None`` keeps the learning rate constant."""
        optimizers: dict[str, torch.optim.Optimizer] = {
            name: torch.optim.AdamW(params, **{**defaults, **per_group.get(name, {})})
            for name, params in groups.items()
        }
        if total_steps is None:
            return cls(optimizers, [])
        factor = warmup_cosine(total_steps, warmup_fraction)
        return cls(optimizers, [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in optimizers.values()])

    def step(self, losses: dict[str, torch.Tensor], groups: dict[str, list[nn.Parameter]]) -> None:
        """Each loss updates only its own group: gradients first, then every optimiser steps,
        so one group's update never changes the graph another group's loss still needs."""
        names = list(losses)
        unknown = set(names) - set(groups)
        if unknown:
            raise RuntimeError(f"training_step returned losses for unknown optimizer groups {sorted(unknown)}")
        for i, name in enumerate(names):
            inputs = groups[name] if len(names) > 1 else None
            losses[name].backward(inputs=inputs, retain_graph=i < len(names) - 1)
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for scheduler in self.schedulers:
            scheduler.step()


@dataclass
class StageLog:
    losses: list[float] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    best_score: float | None = None
    stopped_early: bool = False
    reference_loss: float | None = None  # pretraining: the method's no-learning rule (reference_pretext_loss)
    held_out_loss: float | None = None  # and the trained module's own loss on the rule's batches and draws
    # the step a checkpoint resumed the stage from (None: it ran from step 0 in this process), so that a
    # record can say its stage's time covers only the steps after it
    resumed_from_step: int | None = None


def _loader(batches: torch.utils.data.Dataset, settings: TrainSettings, start: int = 0) -> torch.utils.data.DataLoader:
    """Batches from step ``start`` on (items are whole batches drawn from (seed, step), so a
    resumed stage sees exactly the batches it would have seen)."""
    if start:
        batches = torch.utils.data.Subset(batches, range(start, len(batches)))  # type: ignore[arg-type]
    return torch.utils.data.DataLoader(
        batches, batch_size=None, shuffle=False, num_workers=settings.num_workers,
        persistent_workers=False, pin_memory=torch.cuda.is_available(), worker_init_fn=ignore_stop_signals,
    )


def ignore_stop_signals(_worker_id: int) -> None:
    """In a loader worker: leave the stop signals to the main process. A worker is forked before the
    stage installs its handlers, so it would run whatever was there before (submitit's preemption handler,
    which checkpoints and requeues the job), and a cluster's signal reaches every process of the step."""
    for each in stop_signals():
        signal.signal(each, signal.SIG_IGN)


def _restore_optimisation(optimisation: Optimisation, saved: dict) -> None:
    for name, optimizer in optimisation.optimizers.items():
        optimizer.load_state_dict(saved["optimizers"][name])
    for scheduler, state in zip(optimisation.schedulers, saved["schedulers"], strict=True):
        scheduler.load_state_dict(state)


def _optimisation_state(optimisation: Optimisation) -> dict:
    return {"optimizers": {n: o.state_dict() for n, o in optimisation.optimizers.items()},
            "schedulers": [s.state_dict() for s in optimisation.schedulers]}


def _maybe_ddp(module: nn.Module, runtime: Runtime) -> nn.Module:
    if world_size() > 1 and torch.distributed.is_initialized():
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)
    return module


def pretrain(
    method: SSLMethod,
    store: ImageStore,
    settings: TrainSettings,
    runtime: Runtime,
    seed: int,
    progress: bool = True,
    checkpoint: Checkpointing | None = None,
) -> tuple[dict[str, torch.Tensor], StageLog]:
    """Pretrain ``method`` on crops of the images in ``store``; return the transferable weights.

    With ``checkpoint``, the stage resumes from a saved state of the same identity and saves one
    periodically and on SIGTERM/SIGINT (:mod:`harness.training.checkpoint`)."""
    steps = pretraining_steps(method, settings)
    module: PretrainModule = runtime.prepare(build_pretrain_module(method, settings, seed))
    module.train()
    config = method.config
    defaults = {
        "lr": config.lr or settings.pretrain_lr,
        "betas": config.betas or settings.pretrain_betas,
        "weight_decay": settings.pretrain_weight_decay if config.weight_decay is None else config.weight_decay,
    }
    warmup = settings.warmup_fraction if config.warmup_fraction is None else config.warmup_fraction
    groups = module.optimizer_groups()
    optimisation = Optimisation.adamw(groups, defaults, module.group_options(), steps, warmup)
    trained = _maybe_ddp(module, runtime)
    if world_size() > 1:
        # every rank built the same weights from ``seed`` (and DDP broadcasts rank 0's); the views
        # and masks drawn from the global RNG during training must differ between ranks
        torch.manual_seed(int(np.random.SeedSequence([seed, rank()]).generate_state(1)[0]))
    batches = PretrainBatches(store, steps, settings.pretrain_batch, settings.crop_size, seed, rank())
    log = StageLog()
    start = 0
    saved = checkpoint.load() if checkpoint else None
    if saved is not None and checkpoint is not None:
        module.load_state_dict(saved["model"])
        _restore_optimisation(optimisation, saved)
        log.losses = list(saved["losses"])
        start = log.resumed_from_step = int(saved["steps_done"])
        checkpoint.log(f"pretraining: resuming from step {start} of {steps} ({checkpoint.file})")
    # a DataLoader iterator draws its base seed from the global RNG when created: the RNG is restored
    # after that draw, where the checkpointed run had made it too
    iterator = iter(_loader(batches, settings, start))
    if saved is not None:
        set_rng_states(saved["rng"])
    bar = tqdm(iterator, total=steps, initial=start, desc=f"pretrain {method.name}",
               unit="step", disable=not (progress and is_main_process()))

    def resumable() -> dict[str, Any]:
        return {"model": module.state_dict(), "losses": log.losses, **_optimisation_state(optimisation)}

    with checkpoint.stop_requests() if checkpoint else contextlib.nullcontext():
        for step, item in enumerate(bar, start=start):
            _pretrain_step(item, step, steps, method, module, trained, optimisation, groups, runtime, log, bar)
            if checkpoint and step + 1 < steps and checkpoint.due(step + 1):
                checkpoint.save(step + 1, resumable())
        if checkpoint and checkpoint.stop_requested():  # asked during the last step: stop with it saved
            checkpoint.save(steps, resumable())
    # the checkpoint stays until the caller has stored the encoder (harness.pipeline clears it)
    log.reference_loss, log.held_out_loss = reference_pretext_loss(module, store, settings, runtime, seed, steps,
                                                                   network=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in module.transfer_state().items()}
    return state, log


def build_pretrain_module(method: SSLMethod, settings: TrainSettings, seed: int) -> PretrainModule:
    """The method's module on a fresh backbone, its initial weights drawn from ``seed``."""
    torch.manual_seed(seed)
    backbone = create_backbone(settings.backbone, in_chans=1)
    if method.uses_hidden_labels:
        return method.build(backbone, get_task(settings.task))  # type: ignore[call-arg]
    return method.build(backbone)


REFERENCE_BATCHES = 4  # batches the no-learning rule is scored on


def reference_batches(store: ImageStore, settings: TrainSettings, seed: int, steps: int) -> Iterator:
    """The items (as ``PretrainBatches`` gives them) of the REFERENCE_BATCHES batches that would follow a
    pretraining's last step: never trained on, they are where its rule without learning is scored."""
    batches = PretrainBatches(store, steps + REFERENCE_BATCHES, settings.pretrain_batch, settings.crop_size, seed,
                              rank())
    return (batches[index] for index in range(steps, steps + REFERENCE_BATCHES))


def forked_rng(runtime: Runtime) -> contextlib.AbstractContextManager:
    """torch's RNG (and the runtime's CUDA one) restored on exit: work inside draws nothing the run sees."""
    return torch.random.fork_rng(devices=[runtime.device] if runtime.device.type == "cuda" else [])


@contextlib.contextmanager
def reference_draws(runtime: Runtime, seed: int) -> Iterator[None]:
    """The RNG a pretraining's rule draws its views, masks and noise from: forked (the run sees none of
    it) and seeded with the training seed, so any script scoring fills on those batches draws the same."""
    with forked_rng(runtime):
        torch.manual_seed(seed)
        yield


def reference_pretext_loss(module: PretrainModule, store: ImageStore, settings: TrainSettings, runtime: Runtime,
                           seed: int, steps: int, network: bool = False) -> tuple[float | None, float | None]:
    """(rule, network) on the batches that would follow the last step (the same pool and crops, never
    trained on): the mean of ``module.reference_loss``, and, with ``network``, the module's own pretext
    loss with the same draws (views, masks, noise) as the rule's, so the two are paired batch by batch
    (the last tenth of training saw other batches, and a rule that reads its batch, a blur or an
    inpainting, moves with it). Under a forked RNG, and with the module's state put back (a forward
    may move a centre or a queue): the run's numbers do not move. (None, None) where the method
    states no rule."""
    last = max(steps - 1, 0)
    rules, losses = [], []
    state = {k: v.detach().clone() for k, v in module.state_dict().items()} if network else None
    try:
        with reference_draws(runtime, seed):
            for item in reference_batches(store, settings, seed, steps):
                images, _ = split_item(item)
                before = rng_states()
                with torch.no_grad():
                    value = module.reference_loss(runtime.batch(images), last, steps)
                if value is None:
                    return None, None
                rules.append(float(value))
                if network:
                    after = rng_states()
                    set_rng_states(before)  # the rule's draws again
                    with torch.no_grad():
                        losses.append(sum(float(v) for v in _pretext_losses(module, item, last, steps,
                                                                              runtime).values()))
                    set_rng_states(after)
    finally:
        if state is not None:
            module.load_state_dict(state)
    return float(np.mean(rules)), (float(np.mean(losses)) if network else None)


def pretext_rule_loss(method: SSLMethod, store: ImageStore, settings: TrainSettings, runtime: Runtime,
                      seed: int) -> float | None:
    """``reference_pretext_loss`` without a pretraining: the rule needs no trained weights, so a fresh
    module of the same seed scores exactly what the run recorded (for encoders cached, or records
    made, before runs kept it). Under a forked RNG, so nothing after it moves."""
    with forked_rng(runtime):
        module = runtime.prepare(build_pretrain_module(method, settings, seed))
        module.train()
        return reference_pretext_loss(module, store, settings, runtime, seed, pretraining_steps(method, settings))[0]


def late_loss(losses: list[float]) -> float | None:
    """The mean loss over the last tenth of the steps (at least one): one step's loss is noisy."""
    if not losses:
        return None
    return float(np.mean(losses[-max(1, len(losses) // 10):]))


def _pretext_losses(net: nn.Module, item, step: int, steps: int, runtime: Runtime) -> dict[str, torch.Tensor]:
    """The pretraining module's losses on one batch item (crops, or crops and hidden targets), by name."""
    images, targets = split_item(item)
    images = runtime.batch(images)
    with runtime.autocast():
        if targets is None:
            out = net(images, step, steps)
        else:
            out = net(images, step, steps, targets.to(runtime.device))
    return out if isinstance(out, dict) else {"main": out}


def _pretrain_step(item, step: int, steps: int, method: SSLMethod, module: PretrainModule, trained: nn.Module,
                   optimisation: Optimisation, groups: dict[str, list[nn.Parameter]], runtime: Runtime,
                   log: StageLog, bar) -> None:
    """One optimisation step of pretraining (the loss must stay finite)."""
    losses = _pretext_losses(trained, item, step, steps, runtime)
    total = sum(float(v.detach()) for v in losses.values())
    if not math.isfinite(total):
        raise HarnessError(f"{method.name}: the pretraining loss became {total} at step {step}; training "
                           "diverged (is a learning rate in --config too high?)")
    optimisation.step(losses, groups)
    module.after_optimizer_step(step, steps)
    log.losses.append(total)
    bar.set_postfix(loss=f"{total:.4f}")


def pretraining_steps(method: SSLMethod, settings: TrainSettings) -> int:
    """The profile's pretraining steps; a control may ask for a multiple (never a method)."""
    factor = method.pretrain_steps_factor
    if factor != 1 and method.role != "control":
        raise HarnessError(f"method {method.name!r} asks for {factor}x the pretraining steps; only a control may")
    return settings.pretrain_steps * int(factor)


def build_segmentation_net(backbone: str, encoder_state: dict[str, torch.Tensor] | None,
                           task: InstanceTask) -> SegmentationNet:
    """The downstream network for ``task``; the encoder takes the transferred weights, strictly."""
    encoder = create_backbone(backbone, in_chans=1)
    if encoder_state is not None:
        encoder.load_state_dict(encoder_state, strict=True)
    return SegmentationNet(encoder, num_outputs=task.num_outputs)


def finetune_steps(settings: TrainSettings, store: ImageStore) -> int:
    """Fine-tuning steps for a label budget: ``finetune_epochs`` passes over the budget's crops
    (each image counts as many crops as tile it), within [finetune_min_steps, finetune_steps].

    More labels get more steps, so error can fall with the budget; early stopping on validation
    ends a run that has stopped improving before the cap, never before ``finetune_min_steps``."""
    crops = 0
    for sample_id in store.ids:
        image, _ = store.get(sample_id)
        crops += math.ceil(image.shape[0] / settings.crop_size) * math.ceil(image.shape[1] / settings.crop_size)
    wanted = math.ceil(settings.finetune_epochs * crops / settings.finetune_batch)
    return int(min(settings.finetune_steps, max(settings.finetune_min_steps, wanted)))


def finetune_optimisation(net: SegmentationNet, settings: TrainSettings, steps: int) -> Optimisation:
    """AdamW over the trainable parameters, the encoder at ``finetune_encoder_lr_factor`` x the
    decoder's lr (a pretrained encoder's features survive the first updates of a random decoder),
    with warm-up and cosine decay over ``steps``."""
    encoder_ids = {id(p) for p in net.encoder.parameters()}
    trainable = [p for p in net.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) in encoder_ids],
         "lr": settings.finetune_lr * settings.finetune_encoder_lr_factor},
        {"params": [p for p in trainable if id(p) not in encoder_ids], "lr": settings.finetune_lr},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=settings.finetune_lr,
                                  weight_decay=settings.finetune_weight_decay)
    factor = warmup_cosine(steps, settings.warmup_fraction)
    return Optimisation({"main": optimizer}, [torch.optim.lr_scheduler.LambdaLR(optimizer, factor)])


def finetune(
    encoder_state: dict[str, torch.Tensor] | None,
    store: ImageStore,
    validate: Callable[[SegmentationNet], float],
    settings: TrainSettings,
    runtime: Runtime,
    seed: int,
    protocol: str = "finetune",
    progress: bool = True,
    checkpoint: Checkpointing | None = None,
) -> tuple[SegmentationNet, StageLog]:
    """Train the segmentation network on the budget in ``store``; keep the best validation state.

    ``validate(net)`` returns a score where higher is better (computed on the validation split).
    Protocol ``frozen`` keeps the encoder's weights fixed and its normalisation layers in eval mode.
    With ``checkpoint``, the stage resumes and saves as :func:`pretrain` does.
    """
    task = get_task(settings.task)
    steps = finetune_steps(settings, store)
    torch.manual_seed(seed)
    net: SegmentationNet = runtime.prepare(build_segmentation_net(settings.backbone, encoder_state, task))
    frozen = protocol == "frozen"
    if frozen:
        for p in net.encoder.parameters():
            p.requires_grad_(False)
    params = {"main": [p for p in net.parameters() if p.requires_grad]}
    optimisation = finetune_optimisation(net, settings, steps)
    # fine-tuning is not distributed: under torchrun every rank trains the same network on the same
    # batches (they do not depend on the rank), so the record rank 0 writes is what a single process
    # would produce from that encoder, and the ranks reach a sweep's next pretraining together
    batches = FinetuneBatches(store, steps, settings.finetune_batch, settings.crop_size, seed, task.pad_value)
    log = StageLog()
    best_state = copy.deepcopy(net.state_dict())
    checks_without_gain = 0
    start = 0
    saved = checkpoint.load() if checkpoint else None
    if saved is not None and checkpoint is not None:
        net.load_state_dict(saved["model"])
        best_state = saved["best_model"]
        _restore_optimisation(optimisation, saved)
        log = StageLog(losses=list(saved["losses"]), validation=[(int(a), float(b)) for a, b in saved["validation"]],
                       best_step=saved["best_step"], best_score=saved["best_score"])
        checks_without_gain = int(saved["checks_without_gain"])
        log.stopped_early = bool(saved.get("stopped_early", False))
        start = log.resumed_from_step = int(saved["steps_done"])
        checkpoint.log(f"fine-tuning: resuming from step {start} of {steps} ({checkpoint.file})")
    # a stage stopped by a signal after its last step (or the one it stopped early on) has no steps left
    done = saved is not None and bool(saved.get("done"))
    iterator = iter(_loader(batches, settings, steps if done else start))  # after its seed draw, as in pretrain()
    if saved is not None:
        set_rng_states(saved["rng"])
    bar = tqdm(iterator, total=steps, initial=start, desc=f"fine-tune ({protocol})",
               unit="step", disable=not (progress and is_main_process()))

    def resumable(**finished: bool) -> dict[str, Any]:
        return {"model": net.state_dict(), "best_model": best_state, "losses": log.losses,
                "validation": [list(v) for v in log.validation], "best_step": log.best_step,
                "best_score": log.best_score, "checks_without_gain": checks_without_gain,
                **_optimisation_state(optimisation), **finished}

    with checkpoint.stop_requests() if checkpoint else contextlib.nullcontext():
        for step, (images, targets) in enumerate(bar, start=start):
            net.train()
            if frozen:
                net.encoder.eval()
            with runtime.autocast():
                logits = net(runtime.batch(images))
            loss = task.loss(logits.float(), targets.to(runtime.device))
            value = float(loss.detach())
            if not math.isfinite(value):
                raise HarnessError(f"the fine-tuning loss became {value} at step {step}; training diverged")
            optimisation.step({"main": loss}, params)
            log.losses.append(value)
            last = step + 1 == steps
            if (step + 1) % settings.val_every == 0 or last:
                net.eval()
                score = float(validate(net))
                log.validation.append((step + 1, score))
                if log.best_score is None or score > log.best_score:
                    log.best_score, log.best_step = score, step + 1
                    best_state = copy.deepcopy(net.state_dict())
                    checks_without_gain = 0
                else:
                    checks_without_gain += 1
                bar.set_postfix(loss=f"{value:.4f}", val=f"{score:.3f}", best=f"{log.best_score:.3f}")
                # never before the budget's fewest steps: a run on one or ten images plateaus
                # early, and stopping there kept a state from the first checks (issue 12 pilot)
                stop = (checks_without_gain >= settings.patience and not last
                        and step + 1 >= settings.finetune_min_steps)
                # under torchrun every rank decides, and on a GPU their numbers may drift apart: one rank
                # stopping while another waits in a checkpoint's all-reduce would hang both. All follow
                # rank 0, whose model the record is
                if max_over_ranks(int(stop) if is_main_process() else 0)[0]:
                    log.stopped_early = True
                    break
            if checkpoint and not last and checkpoint.due(step + 1):
                checkpoint.save(step + 1, resumable())
        if checkpoint and not done and checkpoint.stop_requested():  # asked during the final step
            checkpoint.save(len(log.losses), resumable(done=True, stopped_early=log.stopped_early))
    # the checkpoint stays until the caller has written the record (harness.pipeline clears it)
    net.load_state_dict(best_state)
    net.eval()
    return net, log
