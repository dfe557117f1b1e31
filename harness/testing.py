"""Helpers for testing a method plugin against the harness's contract.

Every built-in plugin's tests use these, and a third-party plugin can too: they drive a
:class:`~harness.methods.base.PretrainModule` exactly the way :func:`harness.training.pretrain`
does (the same multi-group optimiser step, ``after_optimizer_step`` after every step), so a
test that passes here exercises the code path a real run takes. See CONTRIBUTING.md.
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.methods.base import PretrainModule, SSLMethod
from harness.models import create_backbone
from harness.training.loop import Optimisation


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread for the block, restored after.

    Test models are tiny: a second OpenMP thread only adds barriers, and on a shared 2-core
    machine a busy neighbour makes every barrier wait (seen: 2 s instead of 30 ms a step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def smooth_batch(n: int = 4, size: int = 64, seed: int = 0, coarse: int = 8) -> torch.Tensor:
    """A fixed batch (n, 1, size, size) in [0, 1]: coarse uniform noise upsampled bilinearly,
    smooth and grainy like EM crops, and learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, coarse, coarse, generator=g)
    return F.interpolate(base, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def fit_fixed_batch(
    module: PretrainModule,
    images: torch.Tensor,
    steps: int,
    view_seed: int = 1234,
    after_step: Callable[[int], None] | None = None,
    targets: torch.Tensor | None = None,
    **adamw: Any,
) -> list[float]:
    """Train ``module`` for ``steps`` steps on ``images`` with the same random views every step
    (the global RNG is reseeded with ``view_seed`` before each forward), with AdamW at a constant
    learning rate (``adamw``: its options, default lr 2e-3 and weight decay 0.05; the module's
    ``group_options`` override them per group); returns the total loss of every step.

    Each loss updates only its own optimizer group, then ``after_optimizer_step`` runs: the
    harness loop's own :class:`~harness.training.loop.Optimisation`, minus its schedule.
    ``after_step(step)`` is called last, for inspecting the module between steps. ``targets``
    (hidden-label controls only) go with the images, as the loop passes them."""
    groups = module.optimizer_groups()
    defaults = {"lr": 2e-3, "weight_decay": 0.05, **adamw}
    optimisation = Optimisation.adamw(groups, defaults, module.group_options(), total_steps=None)
    module.train()
    totals = []
    for step in range(steps):
        torch.manual_seed(view_seed)
        out = module(images, step, steps) if targets is None else module(images, step, steps, targets)
        losses = out if isinstance(out, dict) else {"main": out}
        totals.append(sum(float(v.detach()) for v in losses.values()))
        optimisation.step(losses, groups)
        module.after_optimizer_step(step, steps)
        if after_step is not None:
            after_step(step)
    return totals


def assert_transfers_strictly(module: PretrainModule, backbone: str, source: nn.Module | None = None) -> None:
    """``module.transfer_state()`` loads into a fresh ``backbone`` with no missing or unexpected
    keys; with ``source``, the weights handed over are that network's own tensors (not copies of
    another branch)."""
    state = module.transfer_state()
    result = create_backbone(backbone, in_chans=1).load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    if source is not None:
        own = source.state_dict()
        for key, tensor in state.items():
            assert tensor.data_ptr() == own[key].data_ptr(), f"{key} is not {type(source).__name__}'s own weight"


def state_differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether any tensor of two state dicts (same keys) differs."""
    return any(not torch.equal(a[k], b[k]) for k in a)


class MethodContract:
    """The tests every method plugin ships, to inherit: pytest collects them in a subclass named
    ``Test...`` (see CONTRIBUTING.md, "Tests every method ships")::

        class TestContract(MethodContract):
            method = MyMethod                       # the SSLMethod subclass
            distribution = "harness-mymethod"       # the package that registers it
            small_config = {"width": 4}             # a config small enough for the test backbones
            bad_configs = [({"width": 0}, "width")] # (config, field the refusal must name)

    They check: the entry point finds the method; bad configs are refused naming their field; a
    few steps on a fixed batch lower the loss; the same seed gives the same losses; the
    transferred weights load strictly into a fresh backbone (each of ``backbones``), are the
    trained ones (they moved), and, with ``transfers_from``, are that sub-network's own tensors;
    a batch of the wrong shape is refused naming the method (by default three channels, and one
    crop where ``min_batch`` > 1). Override :meth:`build` or :meth:`batch` where a method needs
    more (a control's task). In a plugin's own tests ``TestContract().build`` and
    ``TestContract().batch`` give the same seeded module and crops.
    """

    method: type[SSLMethod]
    distribution: str
    small_config: dict[str, Any] = {}
    bad_configs: list[tuple[dict[str, Any], str]] = []
    backbones: tuple[str, ...] = ("test_convnext", "test_resnet")  # LayerNorm; BatchNorm buffers
    crop_size: int = 48
    steps: int = 6
    min_loss_drop: float = 0.0  # how much the loss must fall over ``steps`` steps
    min_batch: int = 1  # the fewest crops the method's training_step accepts
    bad_batch_shapes: tuple[tuple[int, ...], ...] | None = None  # None: see bad_batches()
    transfers_from: str | None = None  # attribute path of the network whose weights transfer

    def build(self, seed: int = 0, backbone: str = "test_convnext", **config: Any) -> PretrainModule:
        torch.manual_seed(seed)
        return self.method({**self.small_config, **config}).build(create_backbone(backbone, in_chans=1))

    def batch(self, n: int = 8, seed: int = 0) -> torch.Tensor:
        return smooth_batch(n, self.crop_size, seed, coarse=self.crop_size // 4)

    def bad_batches(self) -> tuple[tuple[int, ...], ...]:
        if self.bad_batch_shapes is not None:
            return self.bad_batch_shapes
        size = self.crop_size
        too_few = ((self.min_batch - 1, 1, size, size),) if self.min_batch > 1 else ()
        return (*too_few, (4, 3, size, size))  # three channels: EM is grey

    def fit(self, module: PretrainModule, steps: int) -> list[float]:
        with single_thread():
            return fit_fixed_batch(module, self.batch(), steps)

    def test_the_entry_point_registers_the_method(self) -> None:
        from harness.methods.registry import get_method

        entry = get_method(self.method.name)
        assert entry.cls is self.method
        assert entry.plugin.distribution == self.distribution

    def test_bad_configs_are_refused_naming_the_field(self) -> None:
        from harness.errors import HarnessError

        assert self.bad_configs, "list at least one bad config with the field its refusal names"
        for bad, name in self.bad_configs:
            try:
                self.method(bad)
            except HarnessError as err:
                assert repr(self.method.name) in str(err) and name in str(err), (bad, str(err))
            else:
                raise AssertionError(f"config {bad} was accepted")

    def test_a_few_steps_on_a_fixed_batch_lower_the_loss(self) -> None:
        losses = self.fit(self.build(), self.steps)
        assert all(math.isfinite(v) for v in losses), losses
        assert losses[-1] < losses[0] - self.min_loss_drop, losses

    def test_the_same_seed_gives_the_same_losses(self) -> None:
        assert self.fit(self.build(seed=3), 2) == self.fit(self.build(seed=3), 2)

    def test_the_encoder_transfers_strictly(self) -> None:
        for backbone in self.backbones:
            module = self.build(backbone=backbone)
            before = {k: v.clone() for k, v in module.transfer_state().items()}
            self.fit(module, 2)
            source = operator.attrgetter(self.transfers_from)(module) if self.transfers_from else None
            assert_transfers_strictly(module, backbone, source=source)
            assert state_differs(before, module.transfer_state()), "the transferred weights did not train"

    def test_the_rule_without_learning_is_finite_and_changes_nothing(self) -> None:
        module = self.build()
        before = {k: v.clone() for k, v in module.state_dict().items()}
        with single_thread():
            value = module.reference_loss(self.batch(), 0, 1)
        assert value is None or (isinstance(value, float) and math.isfinite(value)), value
        assert not state_differs(before, module.state_dict()), "reference_loss changed the module"

    def test_bad_batches_are_refused_naming_the_method(self) -> None:
        from harness.errors import HarnessError

        module = self.build()
        for shape in self.bad_batches():
            try:
                with single_thread():
                    module.training_step(torch.rand(shape), 0, 1)
            except HarnessError as err:
                assert self.method.name in str(err), str(err)
            else:
                raise AssertionError(f"a batch of shape {shape} was accepted")
