"""DINO (Caron et al. 2021) for harness: a student network learns to match, on every view, the
sharpened and centred output distribution that a momentum teacher gives for the global views.

Built on lightly 1.6 (``DINOProjectionHead``, ``DINOLoss`` with centring, ``update_momentum``,
``cosine_schedule``). Views are multi-crop (:func:`harness.augment.multi_crop_views`): two
global views seen by teacher and student, ``n_local_crops`` smaller local views seen by the
student only. The TEACHER encoder transfers: DINO reports that the teacher (the momentum
ensemble of students) is the better encoder throughout training and evaluates it. That holds for
long runs: with the momentum rising from 0.996 to 1 along a cosine, the teacher keeps the product of
the momenta of its initial weights, 0.55 after the quick profile's 300 steps (0.16 after 900), so a
short run transfers an encoder that is still half its initialisation.

This module holds config and registration only, so listing methods does not import lightly;
the network lives in :mod:`harness_dino.module`.
"""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator, model_validator

from harness.methods.base import MethodConfig, SSLMethod
from harness.plugins.hookspecs import provides_methods


def _check_scale(name: str, value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if not 0 < low <= high <= 1:
        raise ValueError(f"{name} must satisfy 0 < min <= max <= 1, got {value}")
    return value


class DINOConfig(MethodConfig):
    """DINO's recipe, with the head's output size cut for small EM datasets.

    From the paper/repository: head 2048 hidden -> 256 bottleneck -> weight-normalised
    prototypes, student temperature 0.1, teacher temperature warmed up linearly from 0.04 to
    0.07 over the first 30% of training (30 of 100 epochs), centre momentum 0.9, teacher
    momentum 0.996 -> 1 along a cosine, global crops (0.4, 1), local crops (0.05, 0.4) at
    96/224 of the global size, last layer frozen for the first epoch (here 1% of the steps).
    Changed: ``output_dim`` 4096 rather than 65536 (a ~25k-image EM corpus needs far fewer
    prototypes, and the 65536-wide layer alone would be 17 M parameters); ``n_local_crops``
    6 rather than 8 to save compute per step.
    """

    hidden_dim: int = Field(2048, ge=1, description="Head MLP width.")
    bottleneck_dim: int = Field(256, ge=1, description="Head bottleneck before the prototypes.")
    output_dim: int = Field(4096, ge=2, description="Number of prototypes (softmax size).")
    batch_norm_head: bool = Field(False, description="BatchNorm in the head MLP (DINO default: off).")
    norm_last_layer: bool = Field(True, description="Fix the prototype norms (stabler; DINO default).")
    freeze_last_layer_fraction: float = Field(
        0.01, ge=0, lt=1, description="Share of the first steps in which the prototypes get no gradient."
    )
    student_temp: float = Field(0.1, gt=0, le=1, description="Student softmax temperature.")
    warmup_teacher_temp: float = Field(0.04, gt=0, le=1, description="Teacher temperature at step 0.")
    teacher_temp: float = Field(0.07, gt=0, le=1, description="Teacher temperature after warm-up.")
    teacher_temp_warmup_fraction: float = Field(
        0.3, ge=0, le=1, description="Share of the steps over which the teacher temperature rises linearly."
    )
    center_momentum: float = Field(0.9, ge=0, lt=1, description="EMA momentum of the teacher-output centre.")
    momentum_start: float = Field(0.996, ge=0, le=1, description="Teacher EMA momentum at step 0.")
    momentum_end: float = Field(1.0, ge=0, le=1, description="Teacher EMA momentum at the last step.")
    n_local_crops: int = Field(6, ge=0, le=32, description="Local views per image, seen by the student only.")
    global_size: int | None = Field(
        None, ge=16, description="Side of the global views in px; None: the input crop size."
    )
    local_size: int | None = Field(
        None, ge=8, description="Side of the local views in px; None: 96/224 of the global size."
    )
    global_scale: tuple[float, float] = Field((0.4, 1.0), description="Area share of a global view.")
    local_scale: tuple[float, float] = Field((0.05, 0.4), description="Area share of a local view.")

    @field_validator("global_scale", "local_scale")
    @classmethod
    def _scale_range(cls, value: tuple[float, float], info: ValidationInfo) -> tuple[float, float]:
        return _check_scale(info.field_name, value)

    @model_validator(mode="after")
    def _consistent(self) -> DINOConfig:
        if self.momentum_start > self.momentum_end:
            raise ValueError(
                f"momentum_start ({self.momentum_start}) must not exceed momentum_end ({self.momentum_end})"
            )
        if self.global_size is not None and self.local_size is not None and self.local_size > self.global_size:
            raise ValueError(f"local_size ({self.local_size}) must not exceed global_size ({self.global_size})")
        return self


class DINO(SSLMethod):
    """DINO: student matches a momentum teacher's centred, sharpened outputs over multi-crop views."""

    name = "dino"
    Config = DINOConfig
    transfers = "the teacher encoder (momentum average of the student)"


harness_methods = provides_methods(DINO)
