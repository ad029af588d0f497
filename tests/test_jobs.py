"""run_jobs' process pool: safe beside the parent's threads, and a dead worker is an error, not a hang."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch

from msvssm.data.jobs import run_jobs, safe_start_method

# Held by a thread of the test process for the whole test: the state a forked child would
# inherit from OpenCV's or OpenMP's thread pools in the middle of their work.
_LOCK_HELD_BY_A_PARENT_THREAD = threading.Lock()


def _can_take_the_lock(_job: int) -> bool:
    taken = _LOCK_HELD_BY_A_PARENT_THREAD.acquire(timeout=3)
    if taken:
        _LOCK_HELD_BY_A_PARENT_THREAD.release()
    return taken


def test_workers_do_not_inherit_locks_held_by_the_parents_threads():
    assert safe_start_method() in ("forkserver", "spawn")
    release = threading.Event()
    holder = threading.Thread(target=lambda: (_LOCK_HELD_BY_A_PARENT_THREAD.acquire(), release.wait(),
                                              _LOCK_HELD_BY_A_PARENT_THREAD.release()))
    holder.start()
    try:
        assert _LOCK_HELD_BY_A_PARENT_THREAD.locked()
        # a plain fork would copy the lock in its held state, and every job would wait on it
        assert run_jobs(_can_take_the_lock, [1, 2], workers=2, progress=False) == [True, True]
    finally:
        release.set()
        holder.join()


@pytest.mark.timeout(120)  # the old Pool waited forever here
def test_a_worker_that_dies_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match=r"worker process died with 2 of 2 job\(s\) unfinished \(one of them: [78]\)"):
        run_jobs(os._exit, [7, 8], workers=2, progress=False)


def _sleep_or_fail(job: str) -> str:
    if job == "fail":
        raise ValueError("this job fails")
    time.sleep(float(job))
    return job


def test_a_failing_job_raises_its_own_error_at_once():
    start = time.monotonic()
    with pytest.raises(ValueError, match="this job fails"):
        run_jobs(_sleep_or_fail, ["60", "fail", "60"], workers=2, progress=False)
    # the running 60-second job is killed, not waited for (the bound is loose: worker start-up included)
    assert time.monotonic() - start < 40


def test_decoding_in_worker_processes_gives_the_same_tensor(tmp_path):
    from PIL import Image

    from msvssm.train.data import decode_images

    rng = np.random.default_rng(0)
    paths = []
    for i in range(300):  # above the size where decode_images starts a pool
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    here = decode_images(paths, size=8, workers=0)
    assert here.shape == (300, 3, 8, 8)
    assert torch.equal(decode_images(paths, size=8, workers=2), here)


def _initializer_that_fails() -> None:
    raise OSError("no face detector here")


@pytest.mark.timeout(120)  # the old Pool re-spawned failing workers forever
def test_an_initializer_that_fails_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="error in the worker's initializer"):
        run_jobs(abs, [-1, -2], workers=2, initializer=_initializer_that_fails, progress=False)
