"""The result record of one run (method x budget x seed): a versioned pydantic schema.

A record is immutable once written. ``SCHEMA_VERSION`` rises whenever a field changes meaning or
is removed; older records are upgraded by :func:`migrate` when read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.data.io import write_text_atomic
from harness.metrics.aggregate import Headline, MetricsReport
from harness.metrics.classification import ClassificationHeadline, ClassificationReport
from harness.plugins.hookspecs import Role

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"
PER_IMAGE_FILE = "per_image.json"  # the per-image scores beside it, written before it


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MethodInfo(_Frozen):
    name: str
    plugin: str
    distribution: str
    version: str
    config: dict[str, Any]
    config_hash: str
    transfers: str
    # "method" (ranked), "control" (e.g. supervised: shown, never ranked) or "reference" (oracle,
    # classical: computed without training, shown unranked)
    role: Role = "method"

    @property
    def code(self) -> str:
        """Which implementation computed the record: its distribution and version. Records of two never
        pool (a new release of a plugin, a rival package of the same name). The core's own methods
        (distribution ``harness``, whose version never moves) are told apart by the numerics version."""
        return self.distribution if self.distribution == "harness" else f"{self.distribution} {self.version}"


class DatasetInfo(_Frozen):
    name: str
    version: str
    params_hash: str
    key: str
    profile: str
    manifest_hash: str
    pool_sizes: dict[str, int]


class Seeds(_Frozen):
    split: int
    data: int
    train: int


class PretrainInfo(_Frozen):
    cache_key: str | None
    reused_cache: bool
    steps: int
    final_loss: float | None
    # the pool pretraining learnt from: "unlabeled", or "train" for a folder with every image labelled
    # (None: no pretraining, or a record from before this was kept, which always meant "unlabeled")
    pool: str | None = None
    # the factor pretraining resampled its pool by: the segment task's working resolution of the labelled
    # training pool on folders of large particles (None: native pixels, as every record before 2026-12-06)
    scale: float | None = None
    # the mean pretext loss over the last tenth of the steps, and what the method's rule without
    # learning scores on the batches that follow (PretrainModule.reference_loss): was the pretext
    # learnt? None where the method states no rule, or in records from before these were kept
    late_loss: float | None = None
    reference_loss: float | None = None
    # the trained module's own pretext loss on the rule's batches, with the rule's draws: paired with
    # reference_loss batch by batch (late_loss saw other batches). None before it was kept (2026-12-06)
    held_out_loss: float | None = None
    # the step a checkpoint resumed pretraining from in this run (None: from step 0, or not pretrained
    # here); never written in this part of the record: RunRecord.resumed_from states it
    resumed_from_step: int | None = Field(None, exclude=True)


class Selection(_Frozen):
    criterion: str = "validation matched-instance F1 (higher is better)"  # harness.evaluation.selection
    best_step: int | None
    best_score: float | None
    stopped_early: bool
    finetune_steps_run: int


class Member(_Frozen):
    """One network of an ensemble (settings ``ensemble`` above 1): its fine-tuning seed and its own
    model selection on validation (harness.pipeline.member_seeds)."""

    seed: int
    best_step: int | None
    best_score: float | None
    stopped_early: bool
    finetune_steps_run: int


class RunRecord(_Frozen):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    created: str  # ISO 8601, UTC
    method: MethodInfo
    backbone: str
    dataset: DatasetInfo
    budget: str
    budget_images: int
    protocol: Literal["finetune", "frozen"]
    seeds: Seeds
    settings: dict[str, Any]
    pretrain: PretrainInfo
    # the post-processing parameters tuned on validation (harness.evaluation.tuning.Tuning); empty in
    # records of task 3class-v1, which used fixed defaults
    postprocess: dict[str, Any] = Field(default_factory=dict)
    selection: Selection  # of the one network, or of an ensemble's member 0
    # an ensemble's networks, member 0 first; None for one network (and then not written at all, so that
    # such records keep the bytes they had before ensembles existed)
    members: list[Member] | None = None
    # the test-split scores: overall and per length-scale bin (segment) or per reader (classify)
    metrics: MetricsReport | ClassificationReport
    # the length-scale bin of each test image, in per_image.json's order, so that every aggregate can
    # be recomputed from the two files (None in records from before it was kept: there each bin
    # follows from the image's pixel size)
    test_length_scales: list[str] | None = None
    headline: ClassificationHeadline | Headline
    timings_s: dict[str, float]
    peak_memory_mb: float
    device: dict[str, str]
    hardware: dict[str, Any]
    versions: dict[str, str]
    git: dict[str, Any]
    command: str = Field("", description="The command line that produced this record.")
    # near-duplicate pairs between images the run chose on and images it was judged on, accepted with
    # --allow-leakage (empty: none found, or a record from before it was kept); the leaderboard refuses such a run
    accepted_leaks: list[str] = Field(default_factory=list)
    # harness.numerics: the version of everything that decides the numbers ("0": filed before it was kept)
    numerics: str = "0"
    # the stages a checkpoint resumed ("pretrain", "finetune", or "finetune member K" of an ensemble) and
    # the step each resumed from: that stage's timings_s covers only its steps after it (its numbers are
    # those of an unbroken run). None when no stage resumed, and then not written at all, so that such
    # records keep the bytes they had before this was kept (2026-12-07)
    resumed_from: dict[str, int] | None = None

    def dump(self) -> dict[str, Any]:
        """The record as JSON data, as it is written and filed."""
        unwritten = {name for name in ("members", "resumed_from") if getattr(self, name) is None}
        return self.model_dump(mode="json", exclude=unwritten or None)

    def write(self, directory: Path) -> Path:
        return write_text_atomic(directory / RECORD_FILE, json.dumps(self.dump(), indent=2, sort_keys=True) + "\n")


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a stored record up to :data:`SCHEMA_VERSION` (version 1 is the first: nothing to do)."""
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"record schema version {version!r} is not known (this harness reads {SCHEMA_VERSION})")
    return data


def read_record(path: Path) -> RunRecord:
    return RunRecord.model_validate(migrate(json.loads(Path(path).read_text())))
