"""Process pools for CPU-bound jobs: spawned workers with one thread each.

Workers are started with the *spawn* method: forking a parent that already runs torch (or
OpenMP) threads can deadlock the child. Each worker runs its numeric libraries on one thread,
so ``n`` workers use ``n`` cores instead of ``n`` times the machine. A worker that dies (killed,
out of memory) is reported as one :class:`~singerid.errors.SingerIdError` line; errors a job
raises reach the caller as they were raised.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator, TypeVar

from .errors import SingerIdError

T = TypeVar("T")
R = TypeVar("R")

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
"""Environment variables that cap the threads of the numeric libraries inside a worker."""


def limit_threads() -> None:
    """Run this process's numeric libraries on one thread (a pool worker's initializer)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, each limited to one thread."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=limit_threads)


def pool_map(fn: Callable[[T], R], jobs: Iterable[T], workers: int) -> Iterator[R]:
    """``fn(job)`` for every job, in order, in ``workers`` spawned processes (in this one for ``workers <= 1``).

    ``fn`` must be a module-level function and the jobs picklable. On an error the pending jobs
    are cancelled.
    """
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    with process_pool(min(workers, len(jobs))) as pool:
        try:
            yield from pool.map(fn, jobs)
        except BrokenProcessPool:
            raise SingerIdError(
                "a worker process died (killed, or out of memory); run again with fewer workers (--workers / n_jobs)."
            ) from None
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
