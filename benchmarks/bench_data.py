"""Data pipeline benchmark: synthetic DEAP generation time and preprocessing throughput.

    python benchmarks/bench_data.py [--scale default|tiny|deap] [--workers 1 2] [--keep DIR]

Generates the synthetic DEAP of the chosen scale in a temporary folder, then runs
``preprocess_deap`` on it once per worker count (fresh output folder each time),
prints frames/s and the speed-up relative to the first worker count, and checks
that every run wrote byte-identical output.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="default", choices=("tiny", "default", "deap"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gen-workers", type=int, default=None, help="workers for generation (default: all cores)")
    parser.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args(argv)

    from msvssm.data.preprocess import PreprocessConfig, preprocess_deap
    from msvssm.data.synth import generate_synthetic_deap

    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        root = base / f"synth_{args.scale}"
        t0 = time.perf_counter()
        gen = generate_synthetic_deap(root, seed=0, scale=args.scale, workers=args.gen_workers, progress=False)
        gen_s = time.perf_counter() - t0
        n_videos = len(list((root / "face_video").rglob("*.avi")))
        print(f"generation ({args.scale}, {args.gen_workers or os.cpu_count()} workers): {gen_s:.1f} s, {n_videos} videos")
        print(f"  {gen}")

        results = []
        for w in args.workers:
            out = base / f"prep_w{w}"
            t0 = time.perf_counter()
            summary = preprocess_deap(root, out, PreprocessConfig(), workers=w, progress=False, overwrite=True)
            dt = time.perf_counter() - t0
            results.append((w, dt, summary["frames_sampled"], summary["faces_found"], _digest(out)))

        base_fps = results[0][2] / results[0][1]
        print()
        print(f"{'workers':>7} {'seconds':>8} {'frames':>7} {'faces':>6} {'frames/s':>9} {'speed-up':>8}")
        for w, dt, frames, faces, _ in results:
            fps = frames / dt
            print(f"{w:>7} {dt:>8.1f} {frames:>7} {faces:>6} {fps:>9.1f} {fps / base_fps:>7.2f}x")
        identical = len({r[4] for r in results}) == 1
        print(f"\noutputs identical across worker counts: {identical}")
        print(f"CPU cores: {os.cpu_count()}")
        return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
