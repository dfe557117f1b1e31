"""Checkpoints of a training stage, so that a stopped run resumes where it was.

A checkpoint holds everything the rest of the stage depends on: model, optimisers, schedulers,
every RNG state (torch CPU and CUDA, numpy, Python), the step reached and the stage log. Batches
are drawn from (seed, step), so resuming at step k gives the same numbers as never stopping.

It is written every ``every_s`` seconds (default 10 minutes) or every ``every_steps`` steps, and
when the process receives SIGTERM, SIGINT or submitit's preemption signal (a cluster preempting
or timing out the job, Ctrl-C), atomically
(:func:`harness.data.io.write_bytes_atomic`). It is read with ``torch.load(weights_only=True)``:
tensors and plain containers only, never arbitrary pickled objects. Under torchrun every rank
writes its own file (its RNG states differ) at the same step, agreed on by an all-reduce, and
resumes from it. The file is removed when the stage completes.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.data.io import write_bytes_atomic
from harness.errors import HarnessError
from harness.training.runtime import barrier, max_over_ranks, rank, world_size

DEFAULT_EVERY_S = 600.0


class StopRequested(HarnessError):
    """The stage saved its checkpoint after a stop signal and stopped; a sweep stops too."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


FORMAT = 1


def preemption_signal() -> signal.Signals:
    """The signal submitit (and SLURM's ``--signal``) sends before preempting or timing out a job:
    ``SUBMITIT_PREEMPT_SIGNAL``, USR2 by default. A stage saves on it like on SIGTERM; a sweep
    job then hands it on to submitit, which requeues the job."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper()
    return getattr(signal, name if name.startswith("SIG") else f"SIG{name}", signal.SIGUSR2)


def stop_signals() -> tuple[signal.Signals, ...]:
    return tuple(dict.fromkeys((signal.SIGTERM, signal.SIGINT, preemption_signal())))


def parse_interval(text: str) -> tuple[float | None, int | None]:
    """``10m``, ``90s``, ``2h`` (time), ``500steps`` (steps) or ``off`` -> (seconds, steps)."""
    value = text.strip().lower()
    if value in ("off", "never", "none"):
        return None, None
    units: dict[str, float | None] = {"steps": None, "step": None, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit, seconds in units.items():  # longest suffixes first
        if value.endswith(unit):
            number = value[: -len(unit)].strip()
            try:
                amount = float(number) if seconds else int(number)
            except ValueError:
                break
            if amount <= 0:
                break
            return (amount * seconds, None) if seconds else (None, int(amount))
    raise HarnessError(f"checkpoint interval {text!r} is not understood: use e.g. 10m, 90s, 2h, 500steps or off")


def rng_states() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": _python_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def set_rng_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Checkpointing:
    """Where and how often one stage checkpoints. ``identity`` names what the stage computes (the
    same command gives the same identity); a checkpoint of another identity is never resumed."""

    path: Path
    identity: str
    every_s: float | None = DEFAULT_EVERY_S
    every_steps: int | None = None
    log: Callable[[str], None] = print
    _last: float = field(default_factory=time.monotonic)
    _stop: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.every_steps is not None and self.every_steps < 1:
            raise HarnessError(f"checkpoint interval must be at least 1 step, got {self.every_steps}")
        if self.every_s is not None and self.every_s <= 0:
            raise HarnessError(f"checkpoint interval must be positive, got {self.every_s} s")

    @property
    def file(self) -> Path:
        return self.path if world_size() == 1 else self.path.with_name(f"{self.path.stem}-rank{rank()}.pt")

    def load(self) -> dict[str, Any] | None:
        """The saved state of this stage, or None (none there, another identity, or unreadable:
        then the stage starts from step 0 and says why). Under torchrun the ranks resume only
        together: if their files are of different steps (a rank killed while writing keeps its
        older file), every rank starts from step 0, since ranks at different steps would wait on
        each other for ever."""
        state = self._read()
        steps = int(state["steps_done"]) if state is not None else -1
        highest, negated_lowest = max_over_ranks(steps, -steps)  # max and min in one all-reduce (one process: its own)
        lowest = -negated_lowest
        if highest != lowest:
            held = "none" if lowest < 0 else f"step {lowest}"
            self.log(f"the ranks' checkpoints disagree (from {held} to step {highest}); every rank starts "
                     "from step 0")
            return None
        return state

    def _read(self) -> dict[str, Any] | None:
        if not self.file.is_file():
            return None
        try:
            state = torch.load(io.BytesIO(self.file.read_bytes()), weights_only=True, map_location="cpu")
        except Exception as err:  # noqa: BLE001 - a damaged checkpoint only costs the steps it held
            self.log(f"checkpoint {self.file} is unreadable ({type(err).__name__}); starting from step 0")
            return None
        if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("identity") != self.identity:
            self.log(f"checkpoint {self.file} belongs to another run; starting from step 0")
            return None
        return state

    def due(self, steps_done: int) -> bool:
        """Whether to save after ``steps_done`` steps: interval reached or a stop requested, agreed by
        every rank (so all ranks save at the same step)."""
        wanted = bool(self._stop)
        if self.every_steps is not None and steps_done % self.every_steps == 0:
            wanted = True
        if self.every_s is not None and time.monotonic() - self._last >= self.every_s:
            wanted = True
        return self._agreed(wanted)

    def stop_requested(self) -> bool:
        """Whether a stop signal came during the stage, agreed by every rank. Asked once the steps are
        over (the last step, or the one early stopping ends on, is never followed by :meth:`due`), so
        that a signal there is not swallowed: the stage then saves its finished state and stops."""
        return self._agreed(bool(self._stop))

    def _agreed(self, wanted: bool) -> bool:
        # the second entry carries the signal, so every rank stops for the reason one rank got
        any_wanted, signum = max_over_ranks(int(wanted), int(self._stop[0]) if self._stop else 0)
        if signum and not self._stop:
            self._stop.append(signum)
        return bool(any_wanted)

    def save(self, steps_done: int, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "identity": self.identity, "steps_done": steps_done, "rng": rng_states(),
                    **state}, buffer)
        write_bytes_atomic(self.file, buffer.getvalue())
        self._last = time.monotonic()
        if self._stop:
            raise StopRequested(f"stopped by signal {signal.Signals(self._stop[0]).name} after step {steps_done}; "
                                f"checkpoint saved ({self.file}): run the same command again to resume",
                                self._stop[0])

    def clear(self) -> None:
        """Remove this rank's checkpoint once what the stage computed is stored: after every rank has got
        here (rank 0 alone writes the encoder or the record; a rank-0 death while writing must leave the
        ranks' files in agreement)."""
        barrier()
        self.file.unlink(missing_ok=True)

    @contextlib.contextmanager
    def stop_requests(self) -> Iterator[None]:
        """SIGTERM, SIGINT and the preemption signal ask the stage to save at the end of its current
        step and stop; the handlers there before come back when the stage ends."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return

        def request(signum, frame) -> None:
            if self._stop:  # a second Ctrl-C stops at once
                raise KeyboardInterrupt
            self._stop.append(signum)
            self.log(f"{signal.Signals(signum).name}: saving a checkpoint after this step, then stopping")

        previous = {s: signal.signal(s, request) for s in stop_signals()}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
