"""Model cost on the CPU: parameters, FLOPs (fvcore + scan handle) and training throughput.

    python benchmarks/bench_model.py [--sizes 64 112] [--batch 16] [--iters 5] [--backend auto]

For ``vssm_nano`` and ``msvssm_nano`` and every ablation row in between, at each
input size: parameters, GFLOPs per image, and training throughput in images/s
(forward + backward + AdamW step, train mode). The configurations are timed
round-robin in the same run (each repeat visits every configuration), and each
figure is the median over repeats, so machine noise hits all of them alike; the
overhead of each option is the ratio to plain VSSM measured in this run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from msvssm.flops import count_flops
from msvssm.models import ABLATION_FLAGS, build_model
from msvssm.ops.registry import resolve_backend


def train_step_timer(model, batch, size):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 4, (batch,))
    model.train()

    def step() -> float:
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 112])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=5, help="timed repeats per configuration")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backend", default=None, help="scan backend (default: env var, then auto)")
    parser.add_argument("--model-size", default="nano")
    args = parser.parse_args()
    backend = resolve_backend(args.backend, torch.device("cpu"))
    print(f"scan backend: {backend}; torch threads: {torch.get_num_threads()}; batch {args.batch}")

    configs = []
    for size in args.sizes:
        for row, flags in ABLATION_FLAGS.items():
            torch.manual_seed(0)
            model = build_model(f"vssm_{args.model_size}", num_classes=4, scan_backend=backend, **flags)
            cost = count_flops(model, (3, size, size))
            configs.append(dict(size=size, row=row, model=model, cost=cost, step=train_step_timer(model, args.batch, size), times=[]))
    for c in configs:
        for _ in range(args.warmup):
            c["step"]()
    for _ in range(args.iters):
        for c in configs:  # round-robin: noise is shared
            c["times"].append(c["step"]())

    print()
    header = f"{'input':>6} {'model':<26} {'params (M)':>10} {'GFLOPs':>8} {'train img/s':>11} {'time vs VSSM':>12}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        rows = [c for c in configs if c["size"] == size]
        base = statistics.median(rows[0]["times"])
        for c in rows:
            med = statistics.median(c["times"])
            name = c["row"].replace("VSSM+SE+LayerScale+DSPP", "MS-VSSM (all three)")
            print(
                f"{size:>6} {name:<26} {c['cost']['params'] / 1e6:>10.3f} {c['cost']['flops'] / 1e9:>8.4f} "
                f"{args.batch / med:>11.1f} {med / base:>11.2f}x"
            )
    print("\nGFLOPs are fvcore multiply-accumulates per image, the scan counted as 9*b*l*d*n (+ b*d*l for D).")


if __name__ == "__main__":
    main()
