"""Device, precision and process-rank handling: the only place that asks which hardware runs.

Rank-aware from the start so that ``torchrun`` (DDP) needs no global state: rank and world size
come from ``torch.distributed`` when it is initialised, else from the launcher's environment.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from harness.errors import HarnessError

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def _joined() -> bool:
    """Whether this process is one of several torchrun ranks in a process group (collectives apply)."""
    return world_size() > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def max_over_ranks(*values: int) -> list[int]:
    """Each value's maximum over the torchrun ranks (one all-reduce; on the current GPU under nccl);
    the values themselves in a single process."""
    if not _joined():
        return [int(v) for v in values]
    flags = torch.tensor(values)
    if torch.distributed.get_backend() == "nccl":
        flags = flags.cuda()
    torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    return [int(v) for v in flags.tolist()]


def barrier() -> None:
    """Wait for every torchrun rank (nothing in a single process)."""
    if _joined():
        torch.distributed.barrier()


def is_main_process() -> bool:
    return rank() == 0


def on_main_process(say: Callable[..., Any]) -> Callable[..., None]:
    """``say`` on rank 0 and a no-op on the other ranks: under ``torchrun`` every rank runs the
    same code, and one voice is enough. Errors are not routed through it; every rank raises its own."""
    return say if is_main_process() else (lambda *args, **kwargs: None)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str  # "bf16" or "fp32"
    channels_last: bool

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, module: ModuleT) -> ModuleT:
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return module

    def batch(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(self.device, non_blocking=True)
        if self.channels_last and tensor.ndim == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def describe(self) -> dict[str, str]:
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
        else:
            name = f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
        described = {"type": self.device.type, "name": name, "precision": self.precision,
                     "channels_last": str(self.channels_last)}
        # distributed pretraining sees world_size x the batch, so the process count changes the
        # numbers (and the pretraining cache key); named only when there is more than one, which
        # keeps single-process descriptions, keys and records as they were
        if world_size() > 1:
            described["world_size"] = str(world_size())
        return described


def init_distributed(device_type: str) -> None:
    """Join the process group that ``torchrun`` describes in the environment (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")


def resolve_runtime(device: str = "auto") -> Runtime:
    """``auto``: CUDA with bf16 autocast and channels_last when a GPU is there, else CPU fp32.

    Under ``torchrun`` it also joins the process group, and each rank takes its LOCAL_RANK GPU.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HarnessError("--device cuda was asked for, but torch sees no CUDA GPU here")
        dev = torch.device(device)
        if dev.index is None and world_size() > 1:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if dev.index is not None:
            # the current device is where nccl puts tensors made without one (the checkpoint's rank flags):
            # left at cuda:0, every rank's all-reduce would land on one GPU and nccl refuses or hangs
            torch.cuda.set_device(dev)
        init_distributed("cuda")
        return Runtime(dev, "bf16", True)
    if device != "cpu":
        raise HarnessError(f"unknown device {device!r}: use auto, cpu or cuda")
    init_distributed("cpu")
    return Runtime(torch.device("cpu"), "fp32", False)


def peak_memory_mb(runtime: Runtime) -> float:
    """Peak GPU memory allocated on CUDA; peak resident memory of the process on CPU."""
    if runtime.device.type == "cuda":
        return torch.cuda.max_memory_allocated(runtime.device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
