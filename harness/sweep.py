"""Sweeps: the grid of cells (method x seed x budget), run here or as jobs through submitit.

A cell is one :class:`~harness.context.RunRequest` with its own folder under the sweep's
``out``. Cells run seed by seed (:func:`grid_cells`): every method of the first seed, then of the
next, so a sweep stopped part-way leaves whole seeds, which a paired comparison can use, rather
than every seed of one method and none of another. A cell whose folder holds a readable record is
skipped, so a stopped sweep resumes where it was; a failing cell is written to ``out/failures/``
and the sweep goes on. The cells of one (method, seed) share a pretraining, so they stay together:
in one process here, or in one job when an executor is named. ``local`` runs the jobs as
subprocesses on this machine (submitit's LocalExecutor), ``slurm`` submits them to a SLURM cluster;
a job preempted or timed out is requeued by submitit and resumes from the cells' checkpoints
(:mod:`harness.training.checkpoint`).
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.data.io import locked, write_text_atomic
from harness.data.splits import budget_slug
from harness.errors import HarnessError
from harness.metrics.aggregate import Headline
from harness.pipeline import Context, RunRequest, run_one
from harness.results.record import RECORD_FILE, read_record
from harness.training.checkpoint import StopRequested, preemption_signal
from harness.training.runtime import rank, world_size

Log = Callable[[str], None]
EXECUTORS = ("local", "slurm")
DONE_STATUSES = ("ok", "done before")


def cell_dir(out: Path, request: RunRequest) -> Path:
    budget = budget_slug(request.budget)
    # cells with setting overrides never skip over the profile's records
    overrides = (("pretrain", request.pretrain_steps), ("finetune", request.finetune_steps),
                 ("crop", request.crop_size), ("batch", request.finetune_batch), ("ensemble", request.ensemble))
    stated = "".join(f"-{tag}{n}" for tag, n in overrides if n is not None)
    version = f"-{request.task_version}" if request.task_version else ""  # nor cells of another task version
    return (out / Path(request.dataset).name
            / f"{request.method}-{budget}-{request.protocol}-seed{request.seed}{stated}{version}")


def record_failure(out: Path, request: RunRequest, err: Exception) -> Path:
    directory = out / "failures"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    payload = {"request": request.model_dump(mode="json"), "error": f"{type(err).__name__}: {err}",
               "traceback": traceback.format_exc(), "when": stamp}
    # under torchrun every rank may fail, at the same second: one file each
    by_rank = f"-rank{rank()}" if world_size() > 1 else ""
    name = f"{request.method}-{budget_slug(request.budget)}-seed{request.seed}-{stamp}{by_rank}.json"
    return write_text_atomic(directory / name, json.dumps(payload, indent=1))


def _row(request: RunRequest, status: str, headline: Headline | None = None) -> dict[str, Any]:
    fields = headline.model_dump(exclude={"per_length_scale"}) if headline is not None else {}
    numbers = {k: v for k, v in fields.items() if isinstance(v, (int, float))}
    return {"method": request.method, "budget": request.budget, "seed": request.seed, "status": status, **numbers}


def file_cell(cell: Path, root: Path, log: Log, warn: Log) -> None:
    """File a finished cell into the leaderboard at ``root``; one already filed with these bytes is
    left as it is, and a refusal is reported without stopping the sweep."""
    from harness.results.leaderboard import AlreadyFiled, RecordStore

    try:
        filed = RecordStore(root).add(cell)
    except AlreadyFiled:
        return
    except HarnessError as err:
        warn(f"   not filed: {err}")
        return
    log(f"   filed {filed}")


def run_cells(requests: list[RunRequest], out: Path, force: bool, log: Log, warn: Log,
              file_into: Path | None = None) -> list[dict[str, Any]]:
    """Run ``requests`` one after another in this process; one row per cell. With ``file_into``, each
    finished cell is filed into that leaderboard as it lands (and one finished before, if it never was)."""
    ctx: Context | None = None
    rows = []
    for request in requests:
        log(f"== {request.method} budget {request.budget} seed {request.seed}")
        cell = cell_dir(out, request)
        # one process per cell (a sweep run again while its submitit jobs still run, a lane queue holding
        # a cell twice): two would write one folder's files in turn. torchrun's ranks share the cell.
        with locked(cell.with_name(f".{cell.name}.lock"), wait=False) if world_size() == 1 \
                else contextlib.nullcontext(True) as ours:
            if not ours:
                warn(f"   skipping: {cell} is being run by another process now")
                rows.append(_row(request, "running elsewhere"))
                continue
            row, ctx = _run_cell(request, out, cell, ctx, force, log, warn, file_into)
            rows.append(row)
    return rows


def _run_cell(request: RunRequest, out: Path, cell: Path, ctx: Context | None, force: bool, log: Log,
              warn: Log, file_into: Path | None) -> tuple[dict[str, Any], Context | None]:
    """One cell of :func:`run_cells`: its row, and the shared context (made by the first cell that runs)."""
    if (cell / RECORD_FILE).is_file() and not force:
        try:
            record = read_record(cell / RECORD_FILE)
        except (ValueError, OSError) as err:
            log(f"   {cell / RECORD_FILE} cannot be read ({type(err).__name__}); running the cell again")
        else:
            log(f"   skipping: {cell} already holds its record (--force runs it again)")
            if file_into is not None:
                file_cell(cell, file_into, log, warn)
            return _row(request, "done before", record.headline), ctx
    try:
        ctx = ctx or Context(request)
        record = run_one(request.model_copy(update={"out": cell, "overwrite": True}), ctx, log)
        if file_into is not None and rank() == 0:
            file_cell(cell, file_into, log, warn)
        return _row(request, "ok", record.headline), ctx
    except StopRequested:
        raise  # the cell saved its checkpoint; the whole sweep stops and resumes when run again
    except Exception as err:  # one failing cell must not stop the grid
        record_failure(out, request, err)
        if world_size() > 1:
            # under torchrun the other ranks wait in this cell's collectives: a rank that moved on
            # would hang them, or pair its next collective with theirs; torchrun ends the job instead
            raise
        warn(f"   failed: {type(err).__name__}: {err}")
        return _row(request, f"failed: {type(err).__name__}"), ctx


def grid_cells(methods: list[str], seeds: list[int], budgets: list[str]) -> list[tuple[str, int, str]]:
    """The sweep's (method, seed, budget) cells in the order they run: seed-major, the methods in the
    order given (a confirmation's baseline first), each (method, seed)'s budgets together since they
    share one pretraining."""
    return [(method, seed, budget) for seed in seeds for method in methods for budget in budgets]


def job_groups(requests: list[RunRequest]) -> list[list[RunRequest]]:
    """The cells of each (method, seed), in the order the first of them comes: one job each, so a
    pretraining is made once."""
    groups: dict[tuple[str, int], list[RunRequest]] = {}
    for request in requests:
        groups.setdefault((request.method, request.seed), []).append(request)
    return list(groups.values())


class SweepJob:
    """What one submitit job runs: the cells of one (method, seed). Requeued on preemption or
    timeout (submitit's Checkpointable protocol), it skips the cells already done and resumes
    the current one from its checkpoint.

    The preemption signal that submitit would handle at once (checkpoint the job, requeue, exit)
    first reaches the training stage, which saves its own checkpoint at the end of the step; then
    the job raises the signal again for submitit, whose handler is back in place by then. So a
    requeued job loses at most one step, whatever ``--checkpoint-every`` says."""

    def __call__(self, requests: list[dict[str, Any]], out: str, force: bool,
                 file_into: str | None = None) -> list[dict[str, Any]]:
        cells = [RunRequest.model_validate(r) for r in requests]
        try:
            return run_cells(cells, Path(out), force, log=print, warn=print,
                             file_into=Path(file_into) if file_into else None)
        except StopRequested as stop:
            if stop.signum != preemption_signal() or not callable(signal.getsignal(stop.signum)):
                raise
            print(f"{stop}; handing the preemption on to submitit to requeue the job", flush=True)
            signal.raise_signal(stop.signum)  # submitit's handler requeues and exits the process
            raise  # reached on ranks other than 0, which submitit leaves to the job's end

    def checkpoint(self, requests: list[dict[str, Any]], out: str, force: bool, file_into: str | None = None):
        import submitit

        # a requeued job never forces: the cells it finished before stay finished
        return submitit.helpers.DelayedSubmission(SweepJob(), requests, out, False, file_into)


def submit(requests: list[RunRequest], out: Path, force: bool, executor: str, parameters: dict[str, Any],
           wait: bool, log: Log, max_jobs: int | None = None, poll_s: float = 2.0,
           file_into: Path | None = None) -> list[dict[str, Any]]:
    """Submit one job per (method, seed) through submitit; with ``wait``, collect their rows.

    ``max_jobs`` (local executor only): at most that many jobs run at once, the next one submitted
    as one ends, so that a grid does not start every job on a machine with few cores (two torch
    processes per core stall each other); this call then waits for the whole grid."""
    if executor not in EXECUTORS:
        raise HarnessError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if max_jobs is not None and (executor != "local" or not wait or max_jobs < 1):
        raise HarnessError("--max-jobs N (N >= 1) goes with --executor local and waits for the grid; "
                           "a SLURM cluster queues jobs itself")
    import submitit

    folder = out / "submitit"
    runner = submitit.AutoExecutor(folder=folder, cluster=executor)
    runner.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
    groups = job_groups(requests)
    jobs: list[Any] = []  # submitit Job objects
    for group in groups:
        while max_jobs is not None and sum(not job.done() for job in jobs) >= max_jobs:
            time.sleep(poll_s)
        job = runner.submit(SweepJob(), [r.model_dump(mode="json") for r in group], str(out), force,
                            str(file_into) if file_into is not None else None)
        jobs.append(job)
        log(f"submitted job {job.job_id}: {group[0].method} seed {group[0].seed}, budgets "
            f"{', '.join(r.budget for r in group)} (logs in {folder})")
    if not wait:
        log("not waiting: `harness sweep` with the same arguments later skips finished cells; "
            + ("each job files its cells as they finish" if file_into is not None
               else "file the records with `harness leaderboard add`"))
        return []
    rows: list[dict[str, Any]] = []
    for group, job in zip(groups, jobs, strict=True):
        try:
            rows.extend(job.result())
        except Exception as err:  # noqa: BLE001 - a failed job is reported like a failed cell
            first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            log(f"   job {job.job_id} ({group[0].method} seed {group[0].seed}) failed: {first}")
            rows.extend(_row(r, "failed: job") for r in group)
    return rows
