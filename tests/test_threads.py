"""CPU threads: one count for torch and the numba kernels, and scans that are safe from two threads.

* :func:`msvssm.ops.cpu_threads` sets torch's and numba's count and restores both;
* the numba kernels run with that count in whatever Python thread launches them
  (numba's count is thread-local), and follow ``torch.set_num_threads`` by default;
* two Python threads may run the scans at the same time, under every threading
  layer, workqueue included (it aborts the process on concurrent launches unless
  they are serialised): checked in a subprocess, so that an abort fails the test
  instead of killing pytest;
* starting numba's pool does not change torch's count (the omp layer shares torch's
  OpenMP runtime and used to set it to every core);
* results do not depend on numba's count: a model's outputs and gradients bit for bit
  with numba at 1 and 2 threads (torch's count held fixed: torch's convolution rounds
  differently with 1 and 2 threads), and the scans' with (torch 1, numba 1) and
  (torch 2, numba 2).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

from msvssm.ops import available_scan_backends, cpu_threads
from msvssm.ops import threads as T

pytestmark = pytest.mark.skipif("numba" not in available_scan_backends("cpu"), reason="numba is not installed")

numba = pytest.importorskip("numba")

needs_two = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba's pool has one thread here")


@numba.njit(parallel=True)
def _count_probe(out):  # pragma: no cover - compiled
    """Writes the thread count the parallel region runs with."""
    for i in numba.prange(out.shape[0]):
        out[i] = numba.get_num_threads()


def counts_seen_by_a_kernel(in_new_thread: bool) -> int:
    """The thread count a kernel launched through ``launch`` runs with (from this or a new thread)."""
    out = np.zeros(8, np.int64)
    if in_new_thread:
        th = threading.Thread(target=T.launch, args=(_count_probe, out))
        th.start()
        th.join()
    else:
        T.launch(_count_probe, out)
    assert (out == out[0]).all()
    return int(out[0])


# ----------------------------------------------------------------------------- the count


def test_cpu_threads_sets_torch_and_numba_and_restores_them():
    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    with cpu_threads(1) as n:
        assert n == 1 == T.cpu_thread_count()
        assert torch.get_num_threads() == 1
        assert numba.get_num_threads() == 1  # in this, the launching thread
        assert counts_seen_by_a_kernel(in_new_thread=False) == 1
        assert numba.get_num_threads() == 1  # launch restores the thread's count after the call
    assert torch.get_num_threads() == torch_before
    assert numba.get_num_threads() == numba_before
    assert T._requested is None


def test_cpu_threads_of_zero_or_none_changes_nothing():
    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    for n in (0, None):
        with cpu_threads(n) as count:
            assert count == torch_before == torch.get_num_threads()
            assert numba.get_num_threads() == numba_before
    with pytest.raises(ValueError, match="at least 1"):
        T.set_cpu_threads(-1)


def test_cpu_threads_nest_and_restore_in_order():
    before = torch.get_num_threads()
    with cpu_threads(2):
        with cpu_threads(1):
            assert T.cpu_thread_count() == 1 == torch.get_num_threads()
        assert T.cpu_thread_count() == 2 == torch.get_num_threads()
    assert torch.get_num_threads() == before and T._requested is None


def test_kernels_launched_from_another_thread_use_the_count():
    """numba's count is thread-local: a new thread would start at NUMBA_NUM_THREADS (every core)."""
    with cpu_threads(1):
        assert counts_seen_by_a_kernel(in_new_thread=True) == 1


def test_without_a_setting_the_kernels_follow_torch():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert counts_seen_by_a_kernel(in_new_thread=False) == 1
        assert counts_seen_by_a_kernel(in_new_thread=True) == 1
    finally:
        torch.set_num_threads(before)


@needs_two
def test_a_count_above_numbas_pool_is_capped_with_a_warning(caplog):
    limit = numba.config.NUMBA_NUM_THREADS
    with caplog.at_level("WARNING", logger="msvssm.threads"), cpu_threads(limit + 1):
        assert T.numba_thread_count() == limit
        assert counts_seen_by_a_kernel(in_new_thread=True) == limit
    assert any("NUMBA_NUM_THREADS" in r.getMessage() for r in caplog.records)


def test_thread_settings_name_the_counts_and_the_layer():
    with cpu_threads(1):
        s = T.thread_settings()
    assert s["torch"] == 1 and s["numba"] == 1
    assert s["numba_threading_layer"] == numba.threading_layer()


# ----------------------------------------------------------------------------- two threads at once

# Two Python threads run the fused SS2D scan (cross_selective_scan, numba) and the plain numba
# scan, forward and backward, over and over; every result must equal the serial one. Under
# workqueue, unserialised launches abort the process ("Concurrent access has been detected").
CONCURRENT = textwrap.dedent("""
    import logging, sys, threading
    import torch, numba
    from msvssm.ops import cross_selective_scan, selective_scan
    from msvssm.utils import setup_logging

    setup_logging(logging.INFO)
    torch.set_num_threads(2)  # the fused scan's numpy pool and numba's kernels both run 2 threads

    def inputs(seed, b):
        g = torch.Generator().manual_seed(seed)
        c, h, w, n, K = 8, 12, 12, 1, 4
        x = [torch.randn(b, h, w, c, generator=g).permute(0, 3, 1, 2), torch.randn(b, K, c, h, w, generator=g),
             -(0.1 + torch.rand(K * c, n, generator=g)), torch.randn(b, K, n, h, w, generator=g),
             torch.randn(b, K, n, h, w, generator=g), torch.randn(K * c, generator=g), torch.randn(K * c, generator=g) - 2]
        return [t.requires_grad_() for t in x]

    def work(seed):
        x = inputs(seed, 3 + seed)
        y = cross_selective_scan(*x, backend="numba")
        grads = torch.autograd.grad(y.square().sum(), x)
        g = torch.Generator().manual_seed(seed)
        u = torch.randn(3, 16, 200, generator=g, requires_grad=True)
        B, C = torch.randn(3, 4, 200, generator=g), torch.randn(3, 4, 200, generator=g)
        y2 = selective_scan(u, u.detach().abs(), -torch.ones(16, 4), B, C, backend="numba")
        return [y.detach(), *grads, y2.detach(), *torch.autograd.grad(y2.square().sum(), u)]

    want = {s: work(s) for s in (0, 1)}
    print("layer", numba.threading_layer(), flush=True)
    bad = []

    def loop(s):
        for _ in range(int(sys.argv[1])):
            if not all(torch.equal(a, b) for a, b in zip(work(s), want[s])):
                bad.append(s)

    threads = [threading.Thread(target=loop, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("CONCURRENT OK" if not bad else f"MISMATCH in {bad}", flush=True)
""")


def run_concurrent(layer: str | None, repeats: int = 20) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    return subprocess.run([sys.executable, "-c", CONCURRENT, str(repeats)], env=env, capture_output=True,
                          text=True, timeout=600)


# Before the lock, the workqueue case aborted in 5 runs of 5 with 10 repeats (exit code -6).
@pytest.mark.slow
@pytest.mark.parametrize("layer", ["workqueue", None], ids=["workqueue", "default-layer"])
def test_two_threads_may_run_the_scans_at_once(layer):
    proc = run_concurrent(layer)
    report = f"exit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, report  # -6 (SIGABRT): numba's workqueue saw two launches at once
    assert "CONCURRENT OK" in proc.stdout, report
    used = proc.stdout.split("layer ", 1)[1].split()[0]
    if layer is not None:
        assert used == layer, report
    assert f"numba threading layer: {used}" in proc.stderr, report  # the layer is logged, never silent


def test_the_numpy_pool_is_shared_by_concurrent_callers_and_grows():
    from msvssm.ops import cross_scan_numba as X

    X._run_in_pool(2, [(sum, [1, 2])])
    first = X._POOL
    X._run_in_pool(1, [(sum, [1])])
    assert X._POOL is first  # big enough: kept
    start = threading.Barrier(4)

    def grow(w):
        start.wait()
        X._run_in_pool(w, [(sum, [i]) for i in range(w)])

    ts = [threading.Thread(target=grow, args=(w,)) for w in (3, 4, 5, 6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert X._POOL_SIZE >= 6 and X._POOL is not first


# ----------------------------------------------------------------------------- results and the count


@needs_two
@pytest.mark.slow
@pytest.mark.parametrize("fused", [True, False], ids=["fused-scan", "numba-scan"])
def test_results_do_not_depend_on_the_thread_count(fused, monkeypatch):
    """The numba kernels and the numpy pool: a model's forward and backward, bit for bit, with 1 and 2 threads.

    torch's own count is held fixed (1, then 2) while numba's varies: torch's CPU convolution
    does not give the same bits with 1 and 2 threads (DSPP's 1x1 reduce differs in the last
    bit), so no model is bit-for-bit the same across *torch's* counts; the scans are (next test).
    """
    from msvssm.models import build_model
    from msvssm.ops import cross_scan_numba, scan_numba

    seen: list[int] = []
    real_launch = T.launch

    def spy(kernel, *args):  # records numba's count in force when the kernel starts
        def counted(*a):
            seen.append(numba.get_num_threads())
            return kernel(*a)

        return real_launch(counted, *args)

    monkeypatch.setattr(scan_numba, "launch", spy)
    monkeypatch.setattr(cross_scan_numba, "launch", spy)

    torch.manual_seed(0)
    model = build_model("msvssm_nano", drop_path_rate=0.0, scan_backend="numba", fused_scan=fused)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for torch_threads in (1, 2):
        results = []
        for numba_threads in (1, 2):
            seen.clear()
            model.zero_grad()
            with cpu_threads(numba_threads):
                torch.set_num_threads(torch_threads)  # torch's count only; the kernels keep numba_threads
                out = model(x)
                out.square().sum().backward()
                assert torch.get_num_threads() == torch_threads  # numba did not change it
            assert seen and set(seen) == {numba_threads}, seen
            results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
        (y1, g1), (y2, g2) = results
        assert torch.equal(y1, y2), torch_threads
        assert all(torch.equal(a, b) for a, b in zip(g1, g2)), torch_threads


@needs_two
def test_the_scans_give_the_same_bits_with_torch_and_numba_both_at_1_and_2_threads():
    """The two numba scans, forward and every gradient, with (torch 1, numba 1) and (torch 2, numba 2)."""
    from msvssm.ops import cross_selective_scan, selective_scan

    g = torch.Generator().manual_seed(0)
    b, c, h, w, n, K = 8, 6, 5, 5, 1, 4
    x = [torch.randn(b, h, w, c, generator=g).permute(0, 3, 1, 2), torch.randn(b, K, c, h, w, generator=g),
         -(0.1 + torch.rand(K * c, n, generator=g)), torch.randn(b, K, n, h, w, generator=g),
         torch.randn(b, K, n, h, w, generator=g), torch.randn(K * c, generator=g), torch.randn(K * c, generator=g)]
    x = [t.requires_grad_() for t in x]
    u = torch.randn(4, 12, 50, generator=g, requires_grad=True)
    B, C = torch.randn(4, 3, 2, 50, generator=g), torch.randn(4, 3, 2, 50, generator=g)
    A = -(0.1 + torch.rand(12, 2, generator=g))
    results = []
    for threads in (1, 2):
        with cpu_threads(threads):
            assert torch.get_num_threads() == threads and T.numba_thread_count() == threads
            y = cross_selective_scan(*x, backend="numba")
            y2 = selective_scan(u, u.detach().abs(), A, B, C, backend="numba")
            results.append([y.detach(), *torch.autograd.grad(y.square().sum(), x),
                            y2.detach(), *torch.autograd.grad(y2.square().sum(), u)])
    assert all(torch.equal(a, b) for a, b in zip(*results))


# A fresh process, so that numba's pool starts inside the scan: the omp layer's start used to
# set torch's count (same libgomp) to every core, whatever torch.set_num_threads had said.
FIRST_LAUNCH = textwrap.dedent("""
    import torch
    from msvssm.ops import selective_scan
    torch.set_num_threads(1)
    assert torch.get_num_threads() == 1  # torch's per-thread OpenMP set-up is done (a model's first conv does it)
    u = torch.randn(2, 4, 16, requires_grad=True)
    selective_scan(u, u.detach().abs(), -torch.ones(4, 2), torch.randn(2, 2, 16), torch.randn(2, 2, 16),
                   backend="numba").sum().backward()
    print("torch threads after the first scan:", torch.get_num_threads())
""")


@needs_two
@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_starting_numbas_pool_leaves_torchs_count_alone(layer):
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
    proc = subprocess.run([sys.executable, "-c", FIRST_LAUNCH], env=env, capture_output=True, text=True, timeout=600)
    if layer == "omp" and "No threading layer could be loaded" in proc.stderr:
        pytest.skip("numba's omp layer does not load here")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch threads after the first scan: 1" in proc.stdout, proc.stdout
