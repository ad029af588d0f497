"""Parallel runs on one machine: N jobs of cores/N threads against one job of all cores, side by side.

    python benchmarks/bench_sweep.py --data data/faces-synth-default-128 [--epochs 2] [--models vssm_nano msvssm_nano]

Trains the same runs (the cpu profile's recipe, shortened to --epochs) into fresh folders once per
arrangement, and prints each arrangement's wall time and its ratio to the first. Run it on a quiet
machine: it measures the machine as much as the code.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from msvssm.train import TrainConfig
from msvssm.train.sweep import Sweep


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["vssm_nano", "msvssm_nano"])
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    arrangements = [(1, cores), (cores, 1)] if cores > 1 else [(1, 1)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for jobs, threads in arrangements:
            base = TrainConfig.from_profile("cpu", data=args.data, epochs=args.epochs, threads=threads, device="cpu")
            sweep = Sweep(Path(tmp) / f"jobs{jobs}", base)
            for model in args.models:
                sweep.add(model, model=model)
            t0 = time.perf_counter()
            sweep.run(seeds=[0], progress=False, jobs=jobs)
            results.append((jobs, threads, time.perf_counter() - t0))
    first = results[0][2]
    print(f"{len(args.models)} runs of {args.epochs} epochs ({', '.join(args.models)}), {cores} cores:")
    for jobs, threads, seconds in results:
        print(f"  {jobs} job(s) x {threads} thread(s): {seconds:.1f} s  (x{first / seconds:.2f} the speed of the first)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
