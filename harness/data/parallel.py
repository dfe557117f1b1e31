"""Work spread over processes: the loops of data handling that decode, hash, read or render many
files, each item independent of the others.

Processes are spawned, never forked: a process that already holds torch's or OpenMP's threads
must not be copied. Results come back in the order of the items, so nothing that depends on them
depends on the worker count. A worker costs a second or two to start (it imports harness), so a
loop only spreads out when each worker gets at least ``per_worker`` items.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")


def cpus() -> int:
    """The CPU cores this process may run on (its affinity, where the system says)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def workers_for(items: int, per_worker: int, most: int | None = None) -> int:
    """How many processes ``items`` are worth: one per ``per_worker`` items, at most the cores."""
    limit = cpus() if most is None else max(1, min(most, cpus()))
    return max(1, min(limit, items // max(1, per_worker)))


def map_in_processes(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    per_worker: int,
    workers: int | None = None,
    desc: str | None = None,
    progress: bool = False,
) -> Iterator[Result]:
    """``function`` over ``items``, in order, in spawned processes when that pays (``function``
    and the items must pickle); in this process otherwise. ``workers`` caps the process count."""
    count = workers_for(len(items), per_worker, workers)
    bar = tqdm(total=len(items), desc=desc, unit="img", disable=not progress, leave=False)
    results: Iterable[Result]
    if count <= 1:
        results = map(function, items)
        for result in results:
            bar.update()
            yield result
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
            chunk = max(1, len(items) // (8 * count))
            for result in pool.map(function, items, chunksize=chunk):
                bar.update()
                yield result
    bar.close()
