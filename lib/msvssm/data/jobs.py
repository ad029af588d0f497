"""Run independent jobs in a process pool with a progress bar, skipping finished ones.

The synthetic DEAP generator and the preprocessing both work one video at a time.
Each job writes its output atomically (a temporary file moved into place), so a
job whose output exists is finished, and a run killed at any moment resumes by
running the others again: ``is_done`` tells :func:`run_jobs` which ones to skip.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from ..utils import get_logger

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
    * ``start_method``: ``multiprocessing`` context (``None``: the platform default).
    * ``postfix(result)`` may return values shown after the progress bar.

    ``func`` and the jobs must be picklable when a pool is used. Results come back
    in completion order: sort them if the order matters.
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
            ctx = mp.get_context(start_method)
            pool = ctx.Pool(n_workers, initializer=initializer, initargs=tuple(initargs))
            outputs = pool.imap_unordered(func, todo, chunksize=1)
        try:
            for r in outputs:
                results.append(r)
                bar.update(1)
                if postfix is not None:
                    shown = postfix(r)
                    if shown:
                        bar.set_postfix(shown)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    finally:
        bar.close()
    return results


def fork_if_available() -> str:
    """``"fork"`` where the platform has it (cheap workers that inherit imports), else ``"spawn"``."""
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"


__all__ = ["resolve_workers", "run_jobs", "fork_if_available"]
