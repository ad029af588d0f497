"""Run independent jobs in a process pool with a progress bar, skipping finished ones.

The synthetic DEAP generator and the preprocessing both work one video at a time.
Each job writes its output atomically (a temporary file moved into place), so a
job whose output exists is finished, and a run killed at any moment resumes by
running the others again: ``is_done`` tells :func:`run_jobs` which ones to skip.

Worker processes are started with ``forkserver`` (``spawn`` where there is none),
never with a plain ``fork``: a forked child inherits the locks of the parent's other
threads (OpenCV's and OpenMP's pools, the fused scan's threads) in whatever state
they were, and can wait on them forever. That hang was seen in the test suite.
A worker that dies (killed, out of memory, a crash in a C library) fails the run
with an error instead of leaving it waiting for a result that never comes, and an
error or Ctrl-C stops the running workers at once.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

from ..utils import LOGGER_NAME, get_logger, setup_logging

log = get_logger("data.jobs")

J = TypeVar("J")
R = TypeVar("R")


def resolve_workers(workers: int | None, n_jobs: int) -> int:
    """Processes to use: ``workers`` (default: all cores), at most one per job, at least 1."""
    return max(1, min(workers or os.cpu_count() or 1, n_jobs))


def run_jobs(
    func: Callable[[J], R],
    jobs: Iterable[J],
    *,
    workers: int | None = None,
    is_done: Callable[[J], bool] | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: Sequence[Any] = (),
    start_method: str | None = None,
    progress: bool = True,
    desc: str | None = None,
    unit: str = "job",
    postfix: Callable[[R], Mapping[str, Any] | None] | None = None,
) -> list[R]:
    """``func`` over the unfinished ``jobs``; returns their results in completion order.

    * ``is_done(job)`` true: the job is skipped (not run, no result); how many were
      skipped is logged as a resume.
    * ``workers`` (default: all cores) is capped at the number of jobs left; with
      one worker the jobs run in this process, in order, without a pool.
    * ``initializer(*initargs)`` runs once per worker process, or once in this
      process when there is no pool (``multiprocessing.parent_process()`` tells
      which).
    * ``start_method``: ``multiprocessing`` context (``None``: :func:`safe_start_method`).
    * ``postfix(result)`` may return values shown after the progress bar.

    ``func`` and the jobs must be picklable when a pool is used (module-level
    functions). Results come back in completion order: sort them if the order
    matters. A worker process that dies raises ``RuntimeError``.
    """
    from tqdm.auto import tqdm

    jobs = list(jobs)
    todo = [j for j in jobs if not is_done(j)] if is_done is not None else jobs
    if len(todo) < len(jobs):
        log.info("resuming: %d of %d %s(s) already done", len(jobs) - len(todo), len(jobs), unit)
    n_workers = resolve_workers(workers, len(todo))
    results: list[R] = []
    bar = tqdm(total=len(todo), unit=unit, disable=not progress, desc=desc)
    try:
        if n_workers == 1:
            if initializer is not None:
                initializer(*initargs)
            outputs = map(func, todo)
            pool = None
        else:
            ctx = mp.get_context(start_method or safe_start_method())
            if ctx.get_start_method() == "forkserver":  # the server imports func's module once, workers inherit it
                ctx.set_forkserver_preload([func.__module__])
            pool = ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_start_worker,
                                       initargs=(_parent_log_level(), initializer, tuple(initargs)))
            outputs = _as_completed(pool, func, todo)
        finished = False
        try:
            for r in outputs:
                results.append(r)
                bar.update(1)
                if postfix is not None:
                    shown = postfix(r)
                    if shown:
                        bar.set_postfix(shown)
            finished = True
        finally:
            if pool is not None:
                if not finished:  # an error or Ctrl-C: stop the running jobs now, not when they end
                    _terminate_workers(pool)
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    return results


def _parent_log_level() -> int | None:
    """The ``msvssm`` logger's level if this process set up its handler (workers do the same), else None."""
    logger = logging.getLogger(LOGGER_NAME)
    return logger.level if any(getattr(h, "_msvssm", False) for h in logger.handlers) else None


def _start_worker(log_level: int | None, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    """A worker's first step: the parent's logging (a fresh process has none), then ``initializer``."""
    if log_level is not None:
        setup_logging(log_level)
    if initializer is not None:
        initializer(*initargs)


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's processes (``shutdown`` alone waits for running jobs to finish)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


def _as_completed(pool: ProcessPoolExecutor, func: Callable[[J], R], todo: Sequence[J]) -> Iterator[R]:
    """Results of ``func`` over ``todo`` in the order they finish; a dead worker is a clear error."""
    futures = {pool.submit(func, job): job for job in todo}
    for n_done, future in enumerate(as_completed(futures)):
        try:
            yield future.result()
        except BrokenProcessPool as err:
            # every unfinished job fails at once: which one the dead worker ran is not known
            raise RuntimeError(
                f"a worker process died with {len(futures) - n_done} of {len(futures)} job(s) unfinished "
                f"(one of them: {futures[future]!r}). Causes: a kill, out of memory, a crash in a C library, "
                "an error in the worker's initializer (logged above), or a job function a fresh process cannot "
                "import (define it at module level). The finished jobs are kept: run again to resume") from err


def safe_start_method() -> str:
    """``"forkserver"`` where the platform has it, else ``"spawn"``: never a plain fork (see the module doc)."""
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


__all__ = ["resolve_workers", "run_jobs", "safe_start_method"]
