"""Re-running a record's exact configuration and checking that the numbers come out the same.

A record fixes everything the pipeline reads: method and config, backbone, dataset, profile
(hence the training settings), protocol, budget, and the split, data and training seeds. On the
same device type and the same code, fine-tuning and evaluation are deterministic on CPU, so
every metric must agree to the last digit.

Before running, what would make a match impossible is refused (a different device, data that
no longer hash the same, changed profile settings); what only might matter is warned about
(harness or plugin version, git commit or uncommitted changes, library versions).
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.io import environment_set
from harness.errors import HarnessError
from harness.results.record import PER_IMAGE_FILE, RunRecord

Log = Callable[[str], None]


@dataclass
class Reproduction:
    original: RunRecord
    new: RunRecord
    run_dir: Path
    warnings: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    compared: int = 0

    @property
    def matches(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        if self.matches:
            return (f"MATCH: all {self.compared} numbers compared are identical to the last digit "
                    "(test metrics overall and per length scale, headline, per-image scores, model selection)")
        shown = "\n".join(f"  {d}" for d in self.differences[:25])
        more = f"\n  ... and {len(self.differences) - 25} more" if len(self.differences) > 25 else ""
        return f"MISMATCH: {len(self.differences)} of {self.compared} numbers differ:\n{shown}{more}"


# ---- what may differ ----------------------------------------------------------------------------


def provenance_warnings(record: RunRecord) -> list[str]:
    """Differences in code and libraries between the record and this installation (not fatal)."""
    from harness import __version__
    from harness.methods.registry import get_method
    from harness.results.provenance import ROUNDING_KEYS, git_state, hardware, library_versions

    out = []
    if record.versions.get("harness") != __version__:
        out.append(f"harness version differs: record {record.versions.get('harness')}, here {__version__}")
    entry = get_method(record.method.name)
    here = (entry.plugin.distribution, entry.plugin.version)
    if here != (record.method.distribution, record.method.version):
        out.append(f"plugin of method {record.method.name} differs: record {record.method.distribution} "
                   f"{record.method.version}, here {here[0]} {here[1]}")
    git = git_state()
    if record.git.get("commit") != git.get("commit"):
        out.append(f"git commit differs: record {record.git.get('commit')}, here {git.get('commit')}")
    if record.git.get("dirty"):
        out.append("the record was made from a checkout with uncommitted changes: its code is not fully known")
    if git.get("dirty"):
        out.append("this checkout has uncommitted changes")
    here_hw = hardware()
    for key in ("cpu_model", *ROUNDING_KEYS):  # absent from older records
        if key in record.hardware and record.hardware[key] != here_hw[key]:
            out.append(f"{key} differs: record {record.hardware[key]}, here {here_hw[key]} "
                       "(CPU numbers may then differ in the last digits)")
    libraries = {"harness", "python"}
    for name, version in sorted(library_versions().items()):
        if name not in libraries and record.versions.get(name) not in (None, version):
            out.append(f"{name} differs: record {record.versions.get(name)}, here {version}")
    return out


def numerics_problem(record: RunRecord) -> str | None:
    """Why this harness computes other numbers than the record's code did, or None."""
    from harness.numerics import LEGACY_NUMERICS, NUMERICS_VERSION

    if record.numerics == NUMERICS_VERSION:
        return None
    then = ("an unversioned numerics (filed before versions were kept)" if record.numerics == LEGACY_NUMERICS
            else f"numerics version {record.numerics}")
    return f"it was computed under {then} and this harness computes numerics version {NUMERICS_VERSION}"


def device_problem(record: RunRecord) -> str | None:
    """Why this machine cannot give the record's numbers, or None when its device is the same."""
    from harness.training.runtime import resolve_runtime

    wanted = record.device.get("type", "cpu")
    try:
        here = resolve_runtime(wanted).describe()
    except HarnessError as err:
        return f"the record ran on {wanted} ({record.device.get('name')}), which is not available here: {err}"
    keys = ("type", "name", "precision", "channels_last")
    if any(here.get(k) != record.device.get(k) for k in keys):
        show = lambda d: ", ".join(f"{k} {d.get(k)}" for k in keys)  # noqa: E731
        hint = ""
        threads = re.search(r"\((\d+) threads\)", str(record.device.get("name")))
        if here.get("type") == "cpu" and threads:
            hint = f"; on a CPU, --threads {threads.group(1)} matches the record's thread count"
        return f"device differs: record [{show(record.device)}], here [{show(here)}]{hint}"
    return None


def _if_not(stated: int | None, profiles: int) -> int | None:
    """A setting the record states as an override of its profile's (None: the profile's own)."""
    return stated if stated not in (None, profiles) else None


def request_for(record: RunRecord, dataset: str | None = None, allow_leakage: bool = False,
                out: Path | None = None):
    """The :class:`~harness.context.RunRequest` that produced ``record``."""
    from harness.metrics.classification import CLASSIFY_TASK
    from harness.pipeline import RunRequest
    from harness.training.settings import settings_for

    profile = settings_for(record.dataset.profile)
    stated = record.settings
    pretrain_steps = stated.get("pretrain_steps")
    finetune_steps = stated.get("finetune_steps")
    overridden = (finetune_steps is not None and finetune_steps != profile.finetune_steps
                  and stated.get("finetune_min_steps") == finetune_steps)
    classify = stated.get("task") == CLASSIFY_TASK
    version = stated.get("task") if not classify and stated.get("task") not in (None, profile.task) else None
    return RunRequest(
        pretrain_steps=_if_not(pretrain_steps, profile.pretrain_steps),
        finetune_steps=finetune_steps if overridden else None,
        crop_size=_if_not(stated.get("crop_size"), profile.crop_size),
        finetune_batch=_if_not(stated.get("finetune_batch"), profile.finetune_batch),
        ensemble=_if_not(stated.get("ensemble"), profile.ensemble),
        method=record.method.name, budget=record.budget, dataset=dataset or record.dataset.name,
        backbone=record.backbone, seed=record.seeds.train, split_seed=record.seeds.split,
        data_seed=record.seeds.data, profile=record.dataset.profile, protocol=record.protocol,
        device=record.device.get("type", "cpu"), method_config=dict(record.method.config),
        allow_leakage=allow_leakage, out=out, progress=False,
        task="classify" if classify else "segment", task_version=version,
    )


def prepare(record: RunRecord, dataset: str | None, allow_leakage: bool, force: bool, out: Path | None,
            log: Log, exact: bool = True):
    """Request and pipeline context for ``record``, after the refusals and warnings. ``exact``:
    the numbers must be the record's (reproduce), so another numerics version is refused."""
    from harness.pipeline import Context

    for warning in provenance_warnings(record):
        log(f"warning: {warning}")
    problem = numerics_problem(record)
    if problem:
        if exact and not force:
            raise HarnessError(f"cannot reproduce run {record.run_id} exactly: {problem} (--force runs anyway)")
        log(f"warning: {problem}; running anyway (--force)")
    problem = device_problem(record)
    if problem:
        if not force:
            raise HarnessError(f"cannot reproduce run {record.run_id}: {problem} (--force runs anyway; "
                               "the numbers will likely differ)")
        log(f"warning: {problem}; running anyway (--force)")
    if dataset is None and _is_folder_dataset(record):
        raise HarnessError(f"run {record.run_id} used the folder dataset {record.dataset.name!r}: "
                           "pass --dataset with its folder path")
    request = request_for(record, dataset, allow_leakage, out)
    ctx = Context(request)
    checks = [
        ("dataset key", record.dataset.key, ctx.dataset.identity.key),
        ("split manifest hash", record.dataset.manifest_hash, ctx.manifest.hash),
        ("training settings of profile " + record.dataset.profile, record.settings, ctx.settings.stated()),
    ]
    for what, then, now in checks:
        if then != now:
            if isinstance(then, dict) and isinstance(now, dict):
                changed = [f"{k} {then.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(then) | set(now))
                           if then.get(k) != now.get(k)]
                message = f"{what} differ (record -> here): {_short('; '.join(changed))}"
            else:
                message = f"{what} differs: record {_short(then)}, here {_short(now)}"
            if not force:
                raise HarnessError(f"cannot reproduce run {record.run_id}: {message}")
            log(f"warning: {message}; running anyway (--force)")
    return request, ctx


def _is_folder_dataset(record: RunRecord) -> bool:
    from harness.data.registry import dataset_names

    return record.dataset.name not in dataset_names()


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


@contextlib.contextmanager
def fresh_cache(enabled: bool) -> Iterator[None]:
    """A throw-away HARNESS_CACHE_DIR, so datasets and pretrained encoders are rebuilt from scratch."""
    from harness.data.cache import CACHE_ENV

    if not enabled:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="harness-reproduce-cache-") as tmp, environment_set(CACHE_ENV, tmp):
        yield


# ---- comparing ----------------------------------------------------------------------------------


def differences(then: Any, now: Any, path: str = "") -> tuple[int, list[str]]:
    """(numbers compared, differences) between two JSON values; floats must be exactly equal."""
    if isinstance(then, dict) and isinstance(now, dict):
        count, out = 0, []
        for key in sorted(set(then) | set(now), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in then or key not in now:
                out.append(f"{where}: only in the {'record' if key in then else 'new run'}")
                count += 1
                continue
            c, d = differences(then[key], now[key], where)
            count, out = count + c, out + d
        return count, out
    if isinstance(then, list) and isinstance(now, list):
        if len(then) != len(now):
            return 1, [f"{path}: {len(then)} items in the record, {len(now)} now"]
        count, out = 0, []
        for i, (a, b) in enumerate(zip(then, now, strict=True)):
            c, d = differences(a, b, f"{path}[{i}]")
            count, out = count + c, out + d
        return count, out
    same = then == now or (isinstance(then, float) and isinstance(now, float) and math.isnan(then)
                           and math.isnan(now))
    return 1, ([] if same else [f"{path}: {then!r} (record) vs {now!r} (now)"])


def unstated_held_out(new: RunRecord) -> bool:
    """The new run reused an encoder cache made before caches kept the trained module's held-out loss."""
    return new.pretrain.reused_cache and new.pretrain.held_out_loss is None and new.pretrain.reference_loss is not None


def compare_records(original: RunRecord, new: RunRecord, per_image_then: list | None,
                    per_image_now: list | None) -> tuple[int, list[str]]:
    parts = [
        ("metrics", original.metrics.model_dump(mode="json"), new.metrics.model_dump(mode="json")),
        ("headline", original.headline.model_dump(mode="json"), new.headline.model_dump(mode="json")),
        ("budget_images", original.budget_images, new.budget_images),
        ("method.config_hash", original.method.config_hash, new.method.config_hash),
        ("selection", original.selection.model_dump(mode="json"), new.selection.model_dump(mode="json")),
        ("members", original.dump().get("members"), new.dump().get("members")),  # an ensemble's every network
        ("pretrain.steps", original.pretrain.steps, new.pretrain.steps),
        ("pretrain.final_loss", original.pretrain.final_loss, new.pretrain.final_loss),
        ("pretrain.scale", original.pretrain.scale, new.pretrain.scale),
    ]
    # kept since 2026-12-05 (held_out_loss: 2026-12-06): compared where the record has them, except a
    # held-out loss that a reused encoder cache made before 2026-12-06 cannot state (reproduce says so)
    for name in ("late_loss", "reference_loss", "held_out_loss"):
        if getattr(original.pretrain, name) is not None and not (name == "held_out_loss" and unstated_held_out(new)):
            parts.append((f"pretrain.{name}", getattr(original.pretrain, name), getattr(new.pretrain, name)))
    if per_image_then is not None and per_image_now is not None:
        parts.append(("per_image", per_image_then, per_image_now))
    total, out = 0, []  # type: tuple[int, list[str]]
    for name, then, now in parts:
        c, d = differences(then, now, name)
        total, out = total + c, out + d
    return total, out


def reproduce(record: RunRecord, per_image: list | None = None, *, dataset: str | None = None,
              allow_leakage: bool = False, force: bool = False, fresh: bool = False, out: Path | None = None,
              log: Log = print) -> Reproduction:
    """Re-run ``record`` with :func:`harness.pipeline.run_one` and compare every number."""
    import json

    from harness.pipeline import run_one

    with contextlib.ExitStack() as stack:
        stack.enter_context(fresh_cache(fresh))
        run_dir = out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="harness-reproduce-")))
        request, ctx = prepare(record, dataset, allow_leakage, force, run_dir, log)
        log(f"re-running {record.method.name}, budget {record.budget}, seeds split/data/train "
            f"{record.seeds.split}/{record.seeds.data}/{record.seeds.train}, profile {record.dataset.profile}, "
            f"{record.protocol}, {record.backbone}, on {request.device}"
            + ("" if fresh else " (cached datasets/encoders with the same key are reused; --fresh rebuilds them)"))
        new = run_one(request, ctx, log=lambda _msg: None)
        side = run_dir / PER_IMAGE_FILE
        per_image_now = json.loads(side.read_text()) if side.is_file() else None
        compared, diffs = compare_records(record, new, per_image, per_image_now)
    if new.pretrain.reused_cache:
        log(f"note: pretraining reused the cached encoder {new.method.name}-{new.pretrain.cache_key}")
    if record.pretrain.held_out_loss is not None and unstated_held_out(new):
        log("note: that cache predates the held-out pretext loss, so pretrain.held_out_loss was not compared; "
            "--fresh pretrains again and compares it")
    return Reproduction(original=record, new=new, run_dir=run_dir, differences=diffs, compared=compared)


# ---- predictions for the overlay plot -----------------------------------------------------------


@dataclass
class RebuiltPrediction:
    sample_id: str
    image: np.ndarray
    true_labels: np.ndarray | None
    pred_labels: np.ndarray
    scores: dict[str, Any]
    matches_record: bool | None  # the image's scores equal the record's per-image entry (None: not kept)


def rebuild_prediction(record: RunRecord, image_index: int, per_image: list | None = None, *,
                       dataset: str | None = None, allow_leakage: bool = False, force: bool = False,
                       kept: Path | None = None, log: Log = print) -> RebuiltPrediction:
    """One test image's prediction: the mask the run kept in ``kept`` (its folder's ``predictions/``)
    where it is there, else from the record's model re-trained (same steps as the pipeline; a filed
    record keeps no masks). The image's scores are compared with the record's, which shows the mask
    is the record's model's."""
    from harness.data.splits import Budget
    from harness.evaluation.predict import predict_instances, score_labels
    from harness.methods.registry import get_method
    from harness.pipeline import fit, reference_labels
    from harness.results.artifacts import read_labels

    # an overlay shows the rebuilt model; whether its scores match the record's is reported beside it
    request, ctx = prepare(record, dataset, allow_leakage, force, None, log, exact=False)
    test_ids = ctx.manifest.pools["test"]
    if not 0 <= image_index < len(test_ids):
        raise HarnessError(f"--image {image_index} is out of range: the test split has {len(test_ids)} images "
                           f"(0 to {len(test_ids) - 1})")
    entry = get_method(request.method)
    method = entry.cls(request.method_config)
    sample = ctx.dataset.load(test_ids[image_index])
    saved = None if kept is None else kept / f"{sample.id}.png"
    if saved is not None and saved.is_file():
        log(f"test image {image_index}: the run's kept prediction {saved} (nothing re-trained)")
        prediction, best_step = read_labels(saved), record.selection.best_step
    elif method.role == "reference":
        budget_ids = ctx.budget_ids(Budget.parse(request.budget))
        prediction, best_step = reference_labels(method, ctx, budget_ids)(sample), None
    else:
        fitted = fit(request, ctx, entry, method, lambda _msg: None)
        prediction = predict_instances(fitted.net, sample, ctx.runtime, ctx.task, fitted.tuning.params,
                                       fitted.tuning.working_scale, fitted.tuning.second_look_px)
        best_step = fitted.stage.best_step
        fitted.clear_checkpoints()
    scores = score_labels(prediction, sample).model_dump(mode="json")
    matches = None
    if per_image is not None:
        matches = scores == per_image[image_index] and best_step == record.selection.best_step
    return RebuiltPrediction(sample_id=sample.id, image=sample.image, true_labels=sample.mask,
                             pred_labels=prediction, scores=scores, matches_record=matches)
