"""Selective-scan (S6) backends side by side on CPU, at VMamba stage-1 shapes.

    python benchmarks/bench_scan.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_scan.py --quick    # batch 2, fewer repeats (~1 minute)

Methods, all float32, all with the same pre/post work (delta_bias + softplus,
the D skip) so the comparison is of equal work:

* ``reference`` - our readable loop in the style of mamba-ssm's
  ``selective_scan_ref`` (``x[:, :, i]`` per step, autograd through the loop);
* ``chunked``   - vectorised PyTorch log-step scan in chunks, hand-written backward;
* ``numba``     - compiled CPU kernels (compile/cache-load cost excluded: warmed up);
* ``mambapy``   - mambapy 1.2.0's parallel scan ``pscan`` on (B, L, D, N) decay/drive
  tensors that we build, then the C contraction, autograd for the rest.

Backends are timed round-robin in one run (repeat r of every method, then
repeat r+1 ...) and medians are reported, because this machine has noisy
spells and other jobs may run: the ratios measured side by side are what
count. "fwd" is inference (``torch.no_grad``); "fwd+bwd" is a training step of
the scan (forward with grad, then backward of a weighted sum). "peak MiB" is
the RSS rise over the pre-call level during one warm fwd+bwd, measured in a
fresh subprocess per method (sampled every 2 ms by a psutil thread, glibc told
to return big blocks on free); indicative only, skipped by --quick.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time

import torch
import torch.nn.functional as F

try:
    import msvssm  # noqa: F401
except ImportError:  # running from a checkout without the editable install
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from msvssm.ops import available_scan_backends, selective_scan

try:
    from mambapy.pscan import pscan as mambapy_pscan

    MAMBAPY_ERROR = ""
except Exception as exc:  # noqa: BLE001
    mambapy_pscan = None
    MAMBAPY_ERROR = f"{type(exc).__name__}: {exc} (pip install mambapy==1.2.0, see requirements-bench.txt)"

try:
    import psutil
except Exception:  # noqa: BLE001
    psutil = None

K = 4  # directions = groups
CHANNELS = 192  # d_inner per direction at stage 1


def make_inputs(b: int, l: int, n: int, seed: int = 0) -> dict:
    """VMamba-like values: A = -(1..n), D = 1, dt bias = softplus^-1(dt), dt log-uniform in [1e-3, 1e-1]."""
    gen = torch.Generator().manual_seed(seed)
    d = K * CHANNELS
    dt = torch.exp(torch.rand(d, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp_min(1e-4)
    x = dict(
        u=torch.randn(b, d, l, generator=gen),
        delta=torch.randn(b, d, l, generator=gen) * 0.1,
        A=-torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1),
        B=torch.randn(b, K, n, l, generator=gen),
        C=torch.randn(b, K, n, l, generator=gen),
        D=torch.ones(d),
        delta_bias=dt + torch.log(-torch.expm1(-dt)),  # inverse softplus
    )
    return x


def scan_backend(name: str):
    def fn(x):
        return selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], None, x["delta_bias"], True,
                              backend=name)
    return fn


def scan_mambapy(x):
    """The same S6 through mambapy's pscan: build (b, l, d, n) decay/drive, scan, contract with C."""
    u, A, B, C = x["u"], x["A"], x["B"], x["C"]
    b, d, l = u.shape
    g, n = B.shape[1], B.shape[2]
    delta = F.softplus(x["delta"] + x["delta_bias"][None, :, None])
    dt = delta.transpose(1, 2)  # (b, l, d)
    decay = torch.exp(dt[..., None] * A)  # (b, l, d, n)
    Bx = B.permute(0, 3, 1, 2)[:, :, :, None, :].expand(b, l, g, d // g, n).reshape(b, l, d, n)
    drive = (dt * u.transpose(1, 2))[..., None] * Bx
    hs = mambapy_pscan(decay, drive)  # (b, l, d, n)
    Cx = C.permute(0, 3, 1, 2)[:, :, :, None, :].expand(b, l, g, d // g, n).reshape(b, l, d, n)
    y = (hs * Cx).sum(-1).transpose(1, 2)
    return y + x["D"][None, :, None] * u


def all_methods(warm: bool = False):
    """{name: fn(inputs) -> y} for every method available here, and notes on the others."""
    backends = available_scan_backends("cpu")
    methods = {"reference": scan_backend("reference"), "chunked": scan_backend("chunked")}
    notes = []
    if "numba" in backends:
        if warm:
            from msvssm.ops import scan_numba

            t0 = time.perf_counter()
            scan_numba.warmup()
            notes.append(f"numba warm-up (compile, or load from the on-disk cache): {time.perf_counter() - t0:.2f} s")
        methods["numba"] = scan_backend("numba")
    else:
        notes.append("numba backend unavailable: skipped")
    if mambapy_pscan is not None:
        methods["mambapy"] = scan_mambapy
    else:
        notes.append(f"mambapy unavailable: {MAMBAPY_ERROR}")
    return methods, notes


def time_fwd(fn, x) -> float:
    with torch.no_grad():
        t0 = time.perf_counter()
        fn(x)
        return time.perf_counter() - t0


def time_fwd_bwd(fn, x, w) -> float:
    leaves = {k: v.detach().requires_grad_() for k, v in x.items()}
    t0 = time.perf_counter()
    y = fn(leaves)
    (y * w).sum().backward()
    return time.perf_counter() - t0


def _rss_peak_during(fn) -> float:
    """MiB: RSS peak minus the level before ``fn()``, sampled every 2 ms by a thread."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        fn()
    finally:
        stop.set()
        th.join()
    return (max(peak[0], proc.memory_info().rss) - base) / 2**20


def memory_probe(method: str, b: int, l: int, n: int) -> None:
    """Run in a fresh process (see peak_memory): one warm-up, then the measured fwd+bwd."""
    torch.set_num_threads(2)
    methods = all_methods()[0]
    fn = methods[method]
    x = make_inputs(b, l, n)
    w = torch.randn(b, K * CHANNELS, l, generator=torch.Generator().manual_seed(1))
    if method != "reference":
        time_fwd_bwd(fn, x, w)
    print(f"{_rss_peak_during(lambda: time_fwd_bwd(fn, x, w)):.1f}")


def peak_memory(method: str, b: int, l: int, n: int) -> float | None:
    """MiB of extra RSS during one fwd+bwd, measured in a fresh subprocess.

    glibc keeps freed large blocks in its heap (its mmap threshold grows), so
    in-process RSS deltas after other backends ran read ~0; the probe runs with
    a fixed low ``MALLOC_MMAP_THRESHOLD_`` so big tensors are mmapped and
    returned on free. None when psutil is missing or the probe fails.
    """
    if psutil is None:
        return None
    import subprocess

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, os.path.abspath(__file__), "--_probe", method, str(b), str(l), str(n)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    except Exception as exc:  # noqa: BLE001
        print(f"note: memory probe for {method} failed: {exc}")
        return None


def fmt_ms(v):
    return "-" if v is None else f"{v * 1e3:9.1f}"


def fmt_ratio(num, den):
    if num is None or den is None:
        return "-"
    return f"{num / den:7.2f}x"


def run_config(b, l, n, methods, repeats, ref_fwd_bwd, ref_repeats, measure_memory):
    x = make_inputs(b, l, n)
    w = torch.randn(b, K * CHANNELS, l, generator=torch.Generator().manual_seed(1))
    fwd = {m: [] for m in methods}
    fb = {m: [] for m in methods}
    # Warm up (numba kernels from cache, allocator), except the slow reference loop.
    for m, fn in methods.items():
        if m != "reference":
            time_fwd(fn, x)
            time_fwd_bwd(fn, x, w)
    for r in range(repeats):
        for m, fn in methods.items():
            is_ref = m == "reference"
            if is_ref and r >= ref_repeats:
                continue
            fwd[m].append(time_fwd(fn, x))
            if not is_ref or ref_fwd_bwd:
                fb[m].append(time_fwd_bwd(fn, x, w))
    med_f = {m: statistics.median(v) if v else None for m, v in fwd.items()}
    med_fb = {m: statistics.median(v) if v else None for m, v in fb.items()}
    mem = {}
    if measure_memory:
        for m in methods:
            if m == "reference" and not ref_fwd_bwd:
                mem[m] = None
                continue
            mem[m] = peak_memory(m, b, l, n)
    return med_f, med_fb, mem, {m: (len(fwd[m]), len(fb[m])) for m in methods}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="batch 2, 3 repeats (reference: 1), reference fwd+bwd only at N=1, L=784, no memory probe")
    ap.add_argument("--slow-ref", action="store_true",
                    help="also time the reference loop's fwd+bwd at N=16 and L=3136 (minutes per repeat)")
    ap.add_argument("--no-memory", action="store_true", help="skip the RSS peak measurement")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads: torch's and the numba kernels' (they follow torch)")
    ap.add_argument("--_probe", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._probe:
        m, b, l, n = args._probe
        memory_probe(m, int(b), int(l), int(n))
        return 0

    torch.set_num_threads(args.threads)
    batch = 2 if args.quick else 8
    repeats = 3 if args.quick else 5
    ref_fb_repeats = 1 if args.quick else 3  # the loop's fwd+bwd takes seconds (minutes when the machine is busy)
    methods, notes = all_methods(warm=True)
    try:
        import numba

        nthreads = numba.get_num_threads()
    except Exception:  # noqa: BLE001
        nthreads = "-"
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, numba threads {nthreads}, "
          f"cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f}")
    for note in notes:
        print("note:", note)

    configs = [(784, 1), (784, 16), (3136, 1)]
    verdicts = []
    for l, n in configs:
        slow = n > 1 or l > 784
        ref_fb = args.slow_ref or not slow
        ref_rep = ref_fb_repeats if not slow else 1
        if args.quick and slow and not args.slow_ref:
            ref_fb = False
        t0 = time.perf_counter()
        measure = not (args.no_memory or args.quick)
        med_f, med_fb, mem, counts = run_config(batch, l, n, methods, repeats, ref_fb, ref_rep, measure)
        print()
        print(f"== batch {batch}, d {K}x{CHANNELS}={K * CHANNELS}, L {l}, d_state {n}  "
              f"(medians; {time.perf_counter() - t0:.0f} s; load avg {os.getloadavg()[0]:.2f}) ==")
        hdr = (f"{'method':<10} {'fwd ms':>9} {'fwd+bwd ms':>10} {'fwd/ref':>8} {'f+b/ref':>8} "
               f"{'fwd/mpy':>8} {'f+b/mpy':>8} {'peak MiB':>9} {'reps':>6}")
        print(hdr)
        print("-" * len(hdr))
        ref_f, ref_b = med_f.get("reference"), med_fb.get("reference")
        mp_f, mp_b = med_f.get("mambapy"), med_fb.get("mambapy")
        for m in methods:
            mm = mem.get(m)
            print(f"{m:<10} {fmt_ms(med_f[m])} {fmt_ms(med_fb[m]):>10} "
                  f"{fmt_ratio(med_f[m], ref_f):>8} {fmt_ratio(med_fb[m], ref_b):>8} "
                  f"{fmt_ratio(med_f[m], mp_f):>8} {fmt_ratio(med_fb[m], mp_b):>8} "
                  f"{'-' if mm is None else f'{mm:9.0f}':>9} {counts[m][0]}/{counts[m][1]:<4}")
        print("(ratios are time / time of the reference loop or of mambapy: below 1 is faster)")
        if not ref_fb:
            print("note: reference loop fwd+bwd skipped here (its backward grows with L^2 and takes minutes; "
                  "--slow-ref to time it)")
        nb = med_fb.get("numba")
        if nb is not None:
            if ref_b is not None:
                speedup = ref_b / nb
                ok = speedup >= 25
                verdicts.append(ok)
                print(f"{'PASS' if ok else 'FAIL'}: numba fwd+bwd is {speedup:.1f}x faster than the reference loop "
                      f"(target >= 25x)")
            if mp_b is not None:
                ok = nb <= mp_b
                verdicts.append(ok)
                print(f"{'PASS' if ok else 'FAIL'}: numba fwd+bwd {nb * 1e3:.1f} ms vs mambapy {mp_b * 1e3:.1f} ms "
                      f"(target: not slower; {mp_b / nb:.2f}x)")
    print()
    print(f"overall: {sum(verdicts)}/{len(verdicts)} targets PASS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
