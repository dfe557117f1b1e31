"""The method contract: what an SSL method plugin provides, and what the harness owns.

A method provides (see CONTRIBUTING.md for a complete minimal example):

- ``name``, and a class docstring whose first paragraph is the method's description;
- ``Config``: a pydantic model with defaults and validation (subclass :class:`MethodConfig`);
- a :class:`PretrainModule` wrapping the backbone with its heads and loss (``<Class>Module`` in
  the package's ``module.py`` by convention, or ``module``, or ``build(backbone)``);
  its ``training_step`` makes the method's views (with :mod:`harness.augment`) and returns the loss;
- which weights transfer: ``PretrainModule.transfer_state()`` returns a state dict with exactly
  the keys of the backbone's own ``state_dict()`` (default: the wrapped backbone itself).

The harness owns the data, optimiser (AdamW), schedule (warm-up + cosine), loop, device,
precision, checkpointing and logging. A method changes those only through the ``MethodConfig``
override fields, or through ``optimizer_groups``/``group_options`` when it needs several
optimisers (a GAN).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import nn

from harness import augment
from harness.errors import HarnessError
from harness.plugins.hookspecs import Role


class MethodConfig(BaseModel):
    """Base of every method config. Fields left at None take the harness's training defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float | None = Field(None, gt=0, description="Peak learning rate; default scales with batch size.")
    weight_decay: float | None = Field(None, ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] | None = Field(None, description="AdamW betas.")
    warmup_fraction: float | None = Field(None, ge=0, lt=1, description="Share of steps spent warming up.")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        # a subclass that changes the default keeps this check (pydantic applies it by field name)
        if value is not None and not all(0 <= b < 1 for b in value):
            raise ValueError(f"betas must lie in [0, 1), got {value}")
        return value

    @field_validator("crop_scale", check_fields=False)
    @classmethod
    def _crop_scale_in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        # any method's crop_scale (the area share of the crop a random view covers), however declared
        low, high = value
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {value}")
        return value


class TwoViewConfig(MethodConfig):
    """The view fields of a method that compares two EM views of each crop
    (:func:`harness.augment.two_views`): their size and the area share they cover."""

    view_size: int | None = Field(
        None, ge=16, description="Side of each view in px; None: the size of the input crops."
    )
    crop_scale: tuple[float, float] = Field(
        (0.25, 1.0), description="Area share of the input crop that each view covers (min, max)."
    )


def check_crops(images: torch.Tensor, method: str, min_batch: int = 1) -> None:
    """Refuse, naming ``method``, a batch that is not (B, 1, H, W) single-channel crops with at
    least ``min_batch`` of them (contrastive losses need 2): the first line of a training_step."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise HarnessError(f"{method} expects single-channel crops (B, 1, H, W), got shape {tuple(images.shape)}")
    if images.shape[0] < min_batch:
        raise HarnessError(f"{method} needs at least {min_batch} crops per batch (got {images.shape[0]}): "
                           "raise the batch size")


class PretrainModule(nn.Module):
    """What the harness trains during pretraining. ``self.backbone`` is the encoder being learnt."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor, step: int, total_steps: int,
                targets: torch.Tensor | None = None) -> torch.Tensor | dict[str, torch.Tensor]:
        # the loop calls the module itself, so DistributedDataParallel sees a forward pass
        if targets is None:
            return self.training_step(images, step, total_steps)
        return self.training_step(images, step, total_steps, targets=targets)  # type: ignore[call-arg]

    def training_step(self, images: torch.Tensor, step: int,
                      total_steps: int) -> torch.Tensor | dict[str, torch.Tensor]:
        """Loss for one batch of crops ``images`` (B, 1, H, W), float in [0, 1].

        Return one loss, or a dict ``{group: loss}`` matching :meth:`optimizer_groups` when the
        method has several optimisers; each loss then updates only its own group's parameters.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement training_step")

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of each optimiser, by group name; one group by default."""
        return {"main": [p for p in self.parameters() if p.requires_grad]}

    def group_options(self) -> dict[str, dict[str, Any]]:
        """Per-group AdamW options (lr, betas, weight_decay) overriding the harness's."""
        return {}

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called after every optimiser step (momentum encoders update here)."""

    @torch.no_grad()
    def reference_loss(self, images: torch.Tensor, step: int, total_steps: int) -> float | None:
        """The pretext loss that a rule without learning gets on ``images``, or None (the default).

        Draw the views, masks and noise exactly as :meth:`training_step` would, then answer with
        the rule instead of the network (FCMAE: hidden patches filled by blurring the visible
        pixels; denoising: a Gaussian blur; SimCLR and DINO: one constant output for every view).
        The harness records it beside the mean loss of the last tenth of pretraining, and beside the
        trained module's own loss on the same batches (``held_out_loss``): it rewinds the RNG to where
        this method began and runs the training forward, so the two are paired draw by draw only if
        this method draws first, in :meth:`training_step`'s order. A rule that draws nothing (a
        constant output) is paired on the images only. A table then says whether the pretext was
        learnt at all at that profile. Return None where no rule
        is a fair floor, e.g. where a constant output is the loss's own optimum (BYOL). Must not
        change the module: the harness calls it after training, before the weights are saved.
        """
        return None

    def transfer_state(self) -> dict[str, torch.Tensor]:
        """The weights that go to the downstream encoder: keys of ``backbone.state_dict()``."""
        return self.backbone.state_dict()


class TwoViewModule(PretrainModule):
    """A module that compares two EM views of each crop (SimCLR, BYOL, MoCo, Barlow Twins): its
    config is a :class:`TwoViewConfig`, which sets the views' size and area share."""

    config: TwoViewConfig

    def __init__(self, backbone: nn.Module, config: TwoViewConfig):
        super().__init__(backbone)
        self.config = config

    def views(self, images: torch.Tensor,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent EM views of every crop, each one batched call (no copy of the input)."""
        return augment.two_views(images, self.config.view_size, self.config.crop_scale, generator)


class SSLMethod:
    """A pretraining method. Subclass, set ``name``, ``Config`` and ``transfers``, and say what
    it does in the class docstring (its first paragraph is the ``description`` that ``harness
    methods`` shows). The :class:`PretrainModule` is ``<package>.module:<Class>Module`` unless
    ``module`` names another or the method implements :meth:`build`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    transfers: ClassVar[str] = "backbone"  # which branch's encoder transfers, in words
    pretrains: ClassVar[bool] = True
    # a control, not an SSL method: its pretraining crops come with the downstream task's targets of
    # the unlabeled pool (ground truth an SSL method never sees; embedded datasets only). The harness
    # then calls ``build(backbone, task)`` and ``training_step(..., targets=...)``; tables mark it as a
    # control and never rank it against the methods.
    uses_hidden_labels: ClassVar[bool] = False
    # "method" (ranked), "control" (shown beside the methods, never ranked) or "reference" (a row
    # computed without training, e.g. the oracle: see harness.methods.reference)
    role: ClassVar[Role] = "method"
    # a control may pretrain for a multiple of the profile's steps, so that it converges: it is a
    # ceiling, not a competitor (refused for methods; stated in the record's pretrain.steps)
    pretrain_steps_factor: ClassVar[int] = 1
    # "package.module:ClassName" of the PretrainModule, built as ClassName(backbone, config): the
    # light/heavy split. The method's own module (imported by `harness methods`, `--help`) stays light:
    # lightly and the module's own code load only when a run builds it. None: the
    # convention, "<package>.module:<Class>Module" for a method class defined in <package>/__init__.py
    module: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "description" not in vars(cls) and cls.__doc__:
            # the docstring's first paragraph, on one line: one home for what the method does
            cls.description = " ".join(inspect.cleandoc(cls.__doc__).split("\n\n")[0].split())

    @classmethod
    def module_path(cls) -> str:
        """Where the :class:`PretrainModule` lives: ``module``, or the convention."""
        return cls.module or f"{cls.__module__}.module:{cls.__name__}Module"

    def __init__(self, config: MethodConfig | dict[str, Any] | None = None):
        if isinstance(config, self.Config):
            self.config = config
            return
        try:
            values = config.model_dump() if isinstance(config, MethodConfig) else (config or {})
            self.config = self.Config(**values)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in err.errors()
            )
            raise HarnessError(f"invalid config for method {self.name!r}: {problems}") from None

    def build(self, backbone: nn.Module) -> PretrainModule:
        """The module to pretrain around ``backbone``: :meth:`module_path`'s class, imported now."""
        where = self.module_path()
        path, _, name = where.partition(":")
        if not name:
            raise HarnessError(f"method {self.name!r}: module {where!r} must read 'package.module:ClassName'")
        try:
            cls = getattr(importlib.import_module(path), name)
        except (ModuleNotFoundError, AttributeError) as err:
            missing = err.name if isinstance(err, ModuleNotFoundError) else None
            if missing and path != missing and not path.startswith(f"{missing}."):  # a package it imports
                raise HarnessError(f"method {self.name!r}: {path} imports {missing!r}, which is not installed "
                                   "(install the plugin with its dependencies)") from None
            how = "its `module`" if self.module else "no `module` is set and the convention"
            raise HarnessError(f"method {self.name!r}: {how} names {where}, which cannot be loaded ({err}); "
                               "set `module = \"package.module:ClassName\"` or implement build") from None
        built = cls(backbone, self.config)
        if not isinstance(built, PretrainModule):
            raise HarnessError(f"method {self.name!r}: {where} built a {type(built).__name__}, "
                               "not a PretrainModule")
        return built
