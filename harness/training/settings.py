"""Training settings owned by the harness, one set per profile.

Methods may override the optimiser fields through their config (see
:class:`harness.methods.base.MethodConfig`); everything else is the same for every method.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import HarnessError
from harness.task import DEFAULT_TASK, TASKS

#: a training crop's side is a multiple of this: the encoders' largest stride, so a crop tiles into whole feature cells
CROP_MULTIPLE = 32


class TrainSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: str = "convnextv2_atto"
    task: str = Field(DEFAULT_TASK, description=f"Downstream task version: {', '.join(TASKS)}.")
    crop_size: int = Field(gt=0, multiple_of=CROP_MULTIPLE)
    # pretraining
    pretrain_steps: int = Field(ge=0)
    pretrain_batch: int = Field(gt=0)
    pretrain_lr: float = Field(gt=0)
    pretrain_weight_decay: float = 0.05
    pretrain_betas: tuple[float, float] = (0.9, 0.999)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    # fine-tuning (the downstream task: identical for every method)
    finetune_steps: int = Field(gt=0, description="The most fine-tuning steps any budget gets.")
    finetune_epochs: float = Field(40.0, gt=0, description="Passes over the budget's crops (see finetune_steps()).")
    finetune_min_steps: int = Field(
        1, gt=0, description="The fewest steps, however small the budget; no early stop before them.")
    finetune_batch: int = Field(gt=0)
    finetune_lr: float = Field(gt=0)
    finetune_weight_decay: float = 1e-4
    finetune_encoder_lr_factor: float = Field(
        1.0, gt=0, le=1, description="The encoder's fine-tuning lr as a fraction of finetune_lr (the decoder's).")
    ensemble: int = Field(
        1, ge=1, description="Networks fine-tuned per run, each from its own seed, read as one: their maps averaged.")
    selection: Literal["f1", "f1-count"] = Field(
        "f1", description="Validation criterion of the kept step and the thresholds (harness.evaluation.selection).")
    # the working resolution (harness.task.scale): budgets whose particles are larger than this are
    # resampled so that their median particle diameter becomes scale_target_diameter_px
    scale_max_diameter_px: float = Field(48.0, gt=0)
    scale_target_diameter_px: float = Field(32.0, gt=0)
    val_every: int = Field(gt=0)
    patience: int = Field(
        4, gt=0, description="Validation checks without improvement before stopping (after finetune_min_steps).")
    num_workers: int = Field(0, ge=0)
    memory_cache_mb: int = Field(2048, ge=0, description="Decoded images kept in memory.")

    def stated(self) -> dict:
        """The settings as a record states them: the ensemble size only above 1, so that records of one
        network read as they did before ensembles existed."""
        return self.model_dump(mode="json", exclude={"ensemble"} if self.ensemble == 1 else None)


PROFILE_SETTINGS: dict[str, TrainSettings] = {
    "smoke": TrainSettings(
        crop_size=64, pretrain_steps=4, pretrain_batch=4, pretrain_lr=1e-3,
        finetune_steps=6, finetune_batch=4, finetune_lr=1e-3, val_every=3, patience=2,
    ),
    "quick": TrainSettings(
        crop_size=128, pretrain_steps=300, pretrain_batch=16, pretrain_lr=1e-3,
        # small budgets run until validation stops improving (up to 1000 steps): a pretrained encoder
        # keeps gaining long after a random one has fitted its one or ten images (README, "The downstream task")
        finetune_steps=1500, finetune_epochs=40, finetune_min_steps=1000, finetune_batch=8, finetune_lr=1e-3,
        val_every=50, patience=6, selection="f1-count",
    ),
    # the source work's scale: 640 px crops, long schedules; for GPU machines
    "paper": TrainSettings(
        # the FCMAE recipe's lr = 1.5e-4 * batch / 256
        crop_size=640, pretrain_steps=100_000, pretrain_batch=64, pretrain_lr=1.5e-4 * 64 / 256,
        pretrain_betas=(0.9, 0.95), finetune_steps=20_000, finetune_batch=16, finetune_lr=5e-4,
        val_every=500, patience=10, num_workers=8, memory_cache_mb=8192,
    ),
}


def settings_for(profile: str, **overrides) -> TrainSettings:
    if profile not in PROFILE_SETTINGS:
        raise HarnessError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILE_SETTINGS)}")
    base = PROFILE_SETTINGS[profile]
    clean = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=clean) if clean else base
