"""CPU thread counts that mean what they say, and numba kernel launches that are safe from any thread.

One number, the *CPU thread count*, governs every CPU pool of the library: torch's
intra-op threads, the numba kernels' threads (:mod:`.scan_numba`, :mod:`.cross_scan_numba`)
and the fused scan's numpy pool. It is the count set by :func:`set_cpu_threads` /
:func:`cpu_threads` (a run's ``threads``), or else ``torch.get_num_threads()`` (which
``torch.set_num_threads`` and ``$OMP_NUM_THREADS`` set). Without this, numba used every
core whatever torch was told, so parallel jobs given one thread each oversubscribed
the machine.

numba's own count is thread-local (``numba.set_num_threads`` affects the calling
thread only; a new thread starts at ``NUMBA_NUM_THREADS``, the size of numba's pool,
fixed when the pool starts: by default the number of cores). So it is not set once:
:func:`launch` sets it, in the thread that launches the kernel, to the CPU thread
count (at most ``NUMBA_NUM_THREADS``) for the length of the call, and restores it.
A hand-made ``numba.set_num_threads`` does not reach the library's kernels: use
:func:`cpu_threads`.

numba's *threading layer* runs the parallel loops: ``tbb`` or ``omp`` when one of
them loads, else ``workqueue`` (numba's choice, or ``$NUMBA_THREADING_LAYER``). The
workqueue layer is not thread-safe: two Python threads inside parallel kernels at
once (the kernels release the GIL) abort the process ("Concurrent access has been
detected"). :func:`launch` serialises launches behind a lock when the layer is not one
of the thread-safe ones, so calling the scans from several threads is always safe
(concurrent callers take turns under workqueue). The layer is picked the first time a
kernel is launched and logged once (``msvssm.threads``, INFO).

Results of the library's CPU kernels do not depend on the thread count: every kernel
splits its work by the shapes only (see the backends), so the scans' outputs and
gradients are bit-for-bit the same with 1 thread or 16. torch's own CPU kernels are
another matter: its convolution (DSPP's 1x1 reduce) rounds differently with 1 and 2
threads, so a whole model is bit-for-bit reproducible for one ``threads`` setting only.

Starting numba's ``omp`` pool resets the OpenMP thread count of the starting thread,
which torch shares; :func:`numba_threading_layer` puts torch's count back (see there).
"""
from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any, Callable, Iterator

import torch

from ..utils import get_logger

log = get_logger("threads")

# numba's layers that may be entered by several threads at once (numba's documentation,
# "Selecting a threading layer for safe parallel execution").
THREAD_SAFE_LAYERS = ("tbb", "omp")

_requested: int | None = None  # set by set_cpu_threads; None: follow torch.get_num_threads()
_init_lock = threading.Lock()
_launch_lock = threading.Lock()  # held around each launch when the layer is not thread-safe
_layer: str | None = None
_warned_limit: set[tuple[int, int]] = set()


def _numba(import_it: bool = True):
    """The numba module (None when it does not import); with ``import_it=False`` only if already imported."""
    if not import_it:
        return sys.modules.get("numba")
    try:
        import numba
    except Exception:  # noqa: BLE001 - an environment without numba: the kernels are unavailable anyway
        return None
    return numba


def cpu_thread_count() -> int:
    """The CPU thread count: the one :func:`set_cpu_threads` set, else ``torch.get_num_threads()``."""
    return _requested or torch.get_num_threads()


def numba_thread_count() -> int:
    """Threads the numba kernels use: the CPU thread count, at most ``NUMBA_NUM_THREADS`` (numba's pool)."""
    numba = _numba()
    wanted = cpu_thread_count()
    if numba is None:
        return wanted
    limit = numba.config.NUMBA_NUM_THREADS
    if wanted > limit and (wanted, limit) not in _warned_limit:
        _warned_limit.add((wanted, limit))
        log.warning("%d CPU threads asked for, but numba's pool has %d (NUMBA_NUM_THREADS): its kernels use %d",
                    wanted, limit, limit)
    return min(wanted, limit)


def numba_threading_layer() -> str:
    """Start numba's thread pool if it is not running (this picks the threading layer); return the layer's name.

    Logged once per process. Raises ``ImportError`` when numba does not import.

    Starting the ``omp`` layer's pool calls ``omp_set_num_threads(NUMBA_NUM_THREADS)`` in the
    calling thread, and torch shares that OpenMP runtime (one ``libgomp.so.1`` per process):
    torch's count in that thread would silently become every core (a run with ``threads=1``
    ran torch on all cores from its first scan on). The count torch had is put back.
    """
    global _layer
    if _layer is None:
        numba = _numba()
        if numba is None:
            raise ImportError("numba does not import")
        with _init_lock:
            if _layer is None:
                torch_threads = torch.get_num_threads()
                numba.get_num_threads()  # starts the pool (thread-safe in numba): the layer is chosen here
                if torch.get_num_threads() != torch_threads:
                    torch.set_num_threads(torch_threads)
                layer = numba.threading_layer()
                if layer in THREAD_SAFE_LAYERS:
                    log.info("numba threading layer: %s (thread-safe); pool of %d threads (NUMBA_NUM_THREADS)",
                             layer, numba.config.NUMBA_NUM_THREADS)
                else:
                    log.info("numba threading layer: %s (not thread-safe: kernel launches from several Python "
                             "threads take turns behind a lock); pool of %d threads (NUMBA_NUM_THREADS)",
                             layer, numba.config.NUMBA_NUM_THREADS)
                _layer = layer
    return _layer


def launch(kernel: Callable, *args: Any) -> Any:
    """Call the numba ``parallel=True`` kernel ``kernel(*args)`` with :func:`numba_thread_count` threads.

    The count is set in the calling thread for the length of the call (numba's count is
    thread-local) and restored afterwards. Under a layer that is not thread-safe
    (workqueue) the call holds a process-wide lock, so concurrent callers take turns
    instead of aborting the process.
    """
    import numba

    layer = numba_threading_layer()
    wanted = numba_thread_count()
    before = numba.get_num_threads()
    if before != wanted:
        numba.set_num_threads(wanted)
    try:
        if layer in THREAD_SAFE_LAYERS:
            return kernel(*args)
        with _launch_lock:
            return kernel(*args)
    finally:
        if before != wanted:
            numba.set_num_threads(before)


def set_cpu_threads(n: int | None) -> Callable[[], None]:
    """Set the process's CPU thread count to ``n`` (torch's and numba's); return a function that restores the previous.

    ``n`` of 0 or None changes nothing (and the function returned does nothing): torch's
    default stays, and the numba kernels follow it. Like ``torch.set_num_threads`` this is
    process-wide; numba's thread-local count is also set in the calling thread (for numba
    code of one's own), and the library's kernels read the count at every launch, in
    whatever thread launches them. Call the function returned once, in the same thread.
    """
    global _requested
    if not n:
        return lambda: None
    if n < 1:
        raise ValueError(f"the CPU thread count must be at least 1, got {n}")
    numba = _numba(import_it=False)  # importing numba for a run that never uses it would cost time
    if numba is not None:
        numba_threading_layer()  # starts numba's pool, if not yet, without changing torch's count
    before_requested, before_torch = _requested, torch.get_num_threads()
    before_numba = numba.get_num_threads() if numba is not None else None
    _requested = n
    torch.set_num_threads(n)
    if numba is not None:
        numba.set_num_threads(numba_thread_count())

    def restore() -> None:
        global _requested
        _requested = before_requested
        torch.set_num_threads(before_torch)
        if before_numba is not None:
            numba.set_num_threads(before_numba)

    return restore


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[int]:
    """``with cpu_threads(n):`` the CPU thread count is ``n`` inside the block (see :func:`set_cpu_threads`).

    Yields the count in force (``cpu_thread_count()``; with ``n`` 0 or None, the default).
    """
    restore = set_cpu_threads(n)
    try:
        yield cpu_thread_count()
    finally:
        restore()


def thread_settings() -> dict:
    """What a run record should say: torch's threads, the numba kernels' threads and numba's layer.

    Starts numba's pool only if numba is already imported (the scan backends import it);
    otherwise the numba entries are None.
    """
    numba = _numba(import_it=False)
    return {
        "torch": torch.get_num_threads(),
        "numba": numba_thread_count() if numba is not None else None,
        "numba_threading_layer": numba_threading_layer() if numba is not None else None,
    }
