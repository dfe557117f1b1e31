"""What a run is asked for (:class:`RunRequest`, one grid cell) and what it runs on
(:class:`Context`: dataset, manifest, settings, runtime), shared by the cells of a sweep."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.data.base import Dataset, image_classes
from harness.data.registry import open_dataset
from harness.data.splits import MAX_SEED, Budget, SplitManifest, make_manifest
from harness.errors import HarnessError
from harness.results.provenance import git_state
from harness.task import InstanceTask, get_task
from harness.task.scale import median_diameter_px, working_scale
from harness.training.batches import ImageStore
from harness.training.checkpoint import parse_interval
from harness.training.runtime import (
    Runtime,
    is_main_process,
    resolve_runtime,
)
from harness.training.settings import CROP_MULTIPLE, TrainSettings, settings_for


class RunRequest(BaseModel):
    """One cell of the benchmark grid."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str
    budget: str
    dataset: str = "synthetic-sem"
    backbone: str | None = None
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Training seed (pretraining and fine-tuning).")
    split_seed: int = Field(0, ge=0, le=MAX_SEED)
    data_seed: int = Field(0, ge=0, le=MAX_SEED)
    profile: Literal["smoke", "quick", "paper"] = "quick"
    task: Literal["segment", "classify"] = Field("segment", description="segment: particle instance segmentation; "
                                                 "classify: one class per image (harness.classify).")
    task_version: str | None = Field(None, description="The segment task's version (harness.task.TASKS) instead "
                                     "of the default; stated in the record, whose tables it never shares.")
    # when not given (None): finetune to segment, frozen to classify (see _protocol_of_task)
    protocol: Literal["finetune", "frozen"] = "finetune"
    device: str = "auto"
    method_config: dict = Field(default_factory=dict)
    allow_leakage: bool = False
    connectivity: Literal[4, 8] = 8
    crop_bottom: int | None = Field(None, ge=0)
    out: Path | None = None
    overwrite: bool = Field(False, description="Replace a record already in `out` (else refused).")
    pretrain_steps: int | None = Field(None, ge=0, description="Pretraining steps instead of the profile's.")
    finetune_steps: int | None = Field(None, ge=1, description="Fine-tuning steps instead of the profile's "
                                       "budget-set schedule: exactly this many (it sets the floor of early stopping).")
    crop_size: int | None = Field(None, gt=0, multiple_of=CROP_MULTIPLE, description="Training crops (pretraining and "
                                  "fine-tuning) of this many pixels a side instead of the profile's.")
    finetune_batch: int | None = Field(None, ge=1, description="Crops per fine-tuning step instead of the profile's.")
    ensemble: int | None = Field(None, ge=1, description="Networks fine-tuned, each from its own seed, and read as "
                                 "one (their maps averaged) instead of the profile's one.")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch (default: torch's own choice); "
                                "the count is part of the record's device, since it changes CPU numbers.")
    checkpoint_every: str = Field("10m", description="Checkpoint interval of pretraining and fine-tuning "
                                  "(10m, 90s, 500steps, off); never changes the numbers.")
    progress: bool = True
    command: str | None = Field(None, description="The command line for the record, where this process's own "
                                "is not it (a sweep's job runs under submitit's); None: this process's.")

    @model_validator(mode="before")
    @classmethod
    def _protocol_of_task(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("protocol") is None:
            data = {**data, "protocol": "frozen" if data.get("task") == "classify" else "finetune"}
        if isinstance(data, dict) and data.get("task") == "classify" and data["protocol"] != "frozen":
            raise HarnessError("the classify task reads a frozen encoder: --protocol finetune does not apply to it")
        if isinstance(data, dict) and data.get("task") == "classify" and data.get("task_version") is not None:
            raise HarnessError("--task-version chooses the segment task's version; the classify task has one")
        if isinstance(data, dict) and data.get("task") == "classify" and data.get("ensemble") not in (None, 1):
            raise HarnessError("--ensemble averages the segment task's maps; the classify task reads a frozen "
                               "encoder's features and has none")
        return data

    @field_validator("ensemble")
    @classmethod
    def _one_network_is_the_profiles(cls, value: int | None) -> int | None:
        # one network is what every profile trains: stated as no override, so its cell and record are the
        # plain run's (not a second folder that files as a duplicate)
        return None if value == 1 else value

    @field_validator("task_version")
    @classmethod
    def _known_task(cls, value: str | None) -> str | None:
        if value is not None:
            get_task(value)  # refuses an unknown version in one line, naming the known ones
        return value

    @field_validator("checkpoint_every")
    @classmethod
    def _interval(cls, value: str) -> str:
        try:
            parse_interval(value)
        except HarnessError as err:
            raise ValueError(str(err)) from None
        return value


#: An embedded dataset missing more images than this is rendered in parallel before the run.
PARALLEL_GENERATION_FROM = 256


def _generate_ahead(dataset: Dataset, progress: bool) -> None:
    from harness.data.synthetic import SyntheticDataset

    if (isinstance(dataset, SyntheticDataset) and len(dataset.index()) > PARALLEL_GENERATION_FROM
            and len(dataset.missing()) > PARALLEL_GENERATION_FROM):
        dataset.generate(workers=os.cpu_count() or 1, progress=progress and is_main_process())


def setting_overrides(pretrain_steps: int | None = None, finetune_steps: int | None = None,
                      crop_size: int | None = None, finetune_batch: int | None = None,
                      ensemble: int | None = None) -> dict[str, int]:
    """Settings for ``--pretrain-steps`` / ``--finetune-steps`` / ``--crop-size`` / ``--finetune-batch`` /
    ``--ensemble``.
    They land in the record's settings, so the leaderboard never pools such records with the profile's."""
    out: dict[str, int] = {}
    if pretrain_steps is not None:
        out["pretrain_steps"] = pretrain_steps
    if finetune_steps is not None:
        out.update(finetune_steps=finetune_steps, finetune_min_steps=finetune_steps)
    if crop_size is not None:
        out["crop_size"] = crop_size
    if finetune_batch is not None:
        out["finetune_batch"] = finetune_batch
    if ensemble is not None:
        out["ensemble"] = ensemble
    return out



class Resolution(NamedTuple):
    """Where a run's task reads its images (:mod:`harness.task.scale`)."""

    scale: float  # the run's resampling factor (1: native pixels)
    diameter_px: float | None  # the budget's median particle diameter it came from
    second_look_px: float | None  # the target of each image's own look; None: every image at ``scale``


class Context:
    """What the cells of a sweep share: dataset, manifest, runtime, stores."""

    def __init__(self, request: RunRequest):
        self.dataset: Dataset = open_dataset(request.dataset, profile=request.profile, seed=request.data_seed,
                                             connectivity=request.connectivity, crop_bottom=request.crop_bottom)
        self.manifest: SplitManifest = make_manifest(self.dataset, request.split_seed)
        _generate_ahead(self.dataset, request.progress)
        if request.threads is not None:
            torch.set_num_threads(request.threads)
        self.runtime: Runtime = resolve_runtime(request.device)
        self.settings: TrainSettings = settings_for(request.profile, backbone=request.backbone,
                                                    task=request.task_version,
                                                    **setting_overrides(request.pretrain_steps, request.finetune_steps,
                                                                        request.crop_size, request.finetune_batch,
                                                                        request.ensemble))
        self.task: InstanceTask = get_task(self.settings.task)
        self._stores: dict[tuple, ImageStore] = {}
        self._scales: dict[tuple, tuple[float, float | None]] = {}
        # provenance of the code that runs, taken before any work (a commit made mid-sweep must not leak in)
        self.git = git_state()
        self._leaks_checked = False
        self._folder_checked = False
        # near-duplicate pairs between what a run chooses on and what it is judged on, accepted with
        # --allow-leakage: every record of this context states them (and the leaderboard refuses it)
        self.accepted_leaks: list[str] = []

    def budget_ids(self, budget: Budget) -> list[str]:
        """The budget's training images (per class from the dataset's image classes, if it has them)."""
        return self.manifest.budget_ids(budget, image_classes(self.dataset) if budget.per_class else None)

    def store(self, ids: list[str], with_targets: bool, scale: float = 1.0,
              second_look_px: float | None = None) -> ImageStore:
        key = (tuple(ids), with_targets, scale, second_look_px)
        if key not in self._stores:
            task = self.task if with_targets else None
            self._stores[key] = ImageStore(self.dataset, ids, task, self.settings.memory_cache_mb, scale,
                                           second_look_px)
        return self._stores[key]

    def resolution(self, budget_ids: list[str]) -> Resolution:
        """The task's working resolution for this budget (:mod:`harness.task.scale`), from the budget's
        own masks only: the run's factor, the median diameter it came from, and the target of each
        image's second look (None where the run does not resample)."""
        key = tuple(budget_ids)
        if key not in self._scales:  # it reads every mask of the budget: once per sweep, not per seed
            diameter = median_diameter_px(self.dataset.load(i).truth for i in budget_ids)
            s = self.settings
            self._scales[key] = (working_scale(diameter, s.scale_max_diameter_px, s.scale_target_diameter_px),
                                 diameter)
        scale, diameter = self._scales[key]
        # each image's second look aims at the run's target wherever the run resamples (never enlarges)
        return Resolution(scale, diameter, self.settings.scale_target_diameter_px if scale < 1.0 else None)

    def pretraining_scale(self, budget_ids: list[str]) -> float:
        """The factor a pretraining method's encoder learns its pool at: the budget's own working
        resolution, as fine-tuning shows it (before folder-7 pretraining read native pixels: on EMPS,
        textures three times larger than the task then showed). The budget's, not the whole labelled
        pool's (folder-7): a 1% run must not learn from masks outside its budget, even one median. Budgets
        with the same factor share an encoder (the cache is keyed by it); 1 on every embedded dataset."""
        return self.resolution(budget_ids).scale

    def check_folder(self, allow_leakage: bool, log, progress: bool = False) -> None:
        """A folder dataset must pass the rules of ``harness data check`` (leaks included) to run."""
        from harness.data.check import verdict_for_run
        from harness.data.folder import FolderDataset

        if not isinstance(self.dataset, FolderDataset) or self._folder_checked:
            return
        verdict = verdict_for_run(self.dataset, self.manifest.split_seed, allow_leakage, progress=progress, log=log)
        if verdict.refusal:
            raise HarnessError(verdict.refusal)
        self.accepted_leaks = verdict.accepted_leaks
        self._folder_checked = self._leaks_checked = True

    def check_leakage(self, allow: bool, log, progress: bool = False) -> None:
        if self._leaks_checked:
            return
        from harness.data.leakage import find_leaks

        leaks = find_leaks(self.dataset, self.manifest, progress=progress and is_main_process())
        if leaks:
            listing = "; ".join(f"{a} ~ {b}" for a, b, *_ in leaks[:5])
            message = (f"{len(leaks)} pretraining image(s) are near-duplicates of validation/test images "
                       f"({listing}{'; ...' if len(leaks) > 5 else ''})")
            if not allow:  # not marked checked: the next cell of a sweep sharing this context is refused too
                raise HarnessError(message + ". Remove them, or pass --allow-leakage to run anyway.")
            log(f"warning: {message}; running anyway (--allow-leakage)")
            self.accepted_leaks = [f"{a} ~ {b} ({distance} bits apart)" for a, b, distance, *_ in leaks]
        self._leaks_checked = True
