"""Training throughput and memory on the CPU: where a step's time goes, side by side in one run.

    python benchmarks/bench_train.py [--data DIR] [--sizes 64 112] [--batch 32] [--steps 6]

For ``vssm_nano`` and ``msvssm_nano`` at each input size, in images/s (median over
round-robin repeats, so machine noise hits every variant alike):

``data: per-image``    FaceImageDataset + torchvision's per-image train_transforms (PIL decode each time)
``data: in memory``    the split decoded once, the paper's augmentation applied per sample to whole batches
``step: fp32``         forward + backward + clip + AdamW (fused) on ready tensors, the training default
``step: scan composed`` the same with SS2D's scan step as the composition cross-scan -> numba scan ->
                       cross-unscan (``fused_scan=False``), the path before the fused CPU kernel
``step: bf16``         the same under CPU bf16 autocast (the scan stays float32)
``step: AdamW foreach`` the same with AdamW's foreach implementation (the default before the fused one)
``step: AdamW loop``   the same with AdamW's per-parameter implementation
``train: in memory``   data + step together, as ``msvssm train`` runs them

and the share of a training step that data preparation would take with each data path.
Peak memory: in a fresh subprocess per configuration, the resident memory (sampled every
millisecond from /proc/self/statm) that the training steps add on top of what the process
held after importing torch and building the model, i.e. activations, gradients and
optimiser state, not the libraries.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "data" / "faces-synth-default-128"


def _train_side(data: Path, size: int):
    from msvssm.data import FaceImageDataset, make_splits

    split = data / "splits" / "frame_seed0.csv"
    if not split.exists():
        split = make_splits(data, "frame")[0]
    return FaceImageDataset(data, split, "train")


def data_timers(data: Path, size: int, batch: int):
    """Two callables that produce one augmented, normalised batch each: per-image PIL and in-memory."""
    from torch.utils.data import DataLoader

    from msvssm.data import train_transforms
    from msvssm.train.data import AugmentParams, BatchIterator, load_split

    ds = _train_side(data, size)
    ds.transform = train_transforms(size)
    loader_iter = iter(DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0))
    memory = BatchIterator(load_split(ds, size), batch, train=True, augment=AugmentParams())
    memory_iter = iter(memory)

    def per_image():
        nonlocal loader_iter
        t = time.perf_counter()
        try:
            next(loader_iter)
        except StopIteration:
            loader_iter = iter(DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0))
            next(loader_iter)
        return time.perf_counter() - t

    def in_memory():
        nonlocal memory_iter
        t = time.perf_counter()
        try:
            batch_ = next(memory_iter)
        except StopIteration:
            memory.set_epoch(memory.epoch + 1)
            memory_iter = iter(memory)
            batch_ = next(memory_iter)
        return time.perf_counter() - t, batch_

    return per_image, in_memory


def step_timer(model_name: str, size: int, batch: int, *, amp: bool = False, adamw: str = "fused", data=None,
               fused_scan: bool = True):
    from timm.optim import create_optimizer_v2

    from msvssm.models import build_model

    torch.manual_seed(0)
    model = build_model(model_name, num_classes=4, fused_scan=fused_scan).train()
    impl = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False)}[adamw]
    opt = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05, **impl)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 4, (batch,))

    def step():
        nonlocal x, y
        t = time.perf_counter()
        if data is not None:
            _, (x, y) = data()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return time.perf_counter() - t

    return step


def rss_during(fn, steps: int) -> float:
    """Peak resident memory (MiB) above the starting level while ``fn`` runs ``steps`` times."""
    import os
    import threading

    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    start, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(steps):
        fn()
    done.set()
    sampler.join()
    return (max(peak[0], rss()) - start) / 2**20


def peak_memory_mib(model_name: str, size: int, batch: int, steps: int = 3) -> float:
    """Memory that ``steps`` training steps add, in a fresh process (MiB); see the module docstring."""
    code = (
        "import sys; sys.argv = ['x'];"
        "from benchmarks.bench_train import rss_during, step_timer;"
        f"s = step_timer({model_name!r}, {size}, {batch});"
        f"print(rss_during(s, {steps}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="preprocessed faces (make reproduce makes them)")
    parser.add_argument("--models", nargs="+", default=["vssm_nano", "msvssm_nano"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 112])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed repeats per variant")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    if not (args.data / "manifest.csv").exists():
        sys.exit(f"no face crops in {args.data}: run `make reproduce` (or msvssm preprocess) first, or pass --data")
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch}, data {args.data}")

    variants = {}
    for size in args.sizes:
        per_image, in_memory = data_timers(args.data, size, args.batch)
        variants[(size, "-", "data: per-image")] = per_image
        variants[(size, "-", "data: in memory")] = lambda f=in_memory: f()[0]
        for name in args.models:
            variants[(size, name, "step: fp32")] = step_timer(name, size, args.batch)
            variants[(size, name, "step: scan composed")] = step_timer(name, size, args.batch, fused_scan=False)
            variants[(size, name, "step: bf16")] = step_timer(name, size, args.batch, amp=True)
            variants[(size, name, "step: AdamW foreach")] = step_timer(name, size, args.batch, adamw="foreach")
            variants[(size, name, "step: AdamW loop")] = step_timer(name, size, args.batch, adamw="loop")
            variants[(size, name, "train: in memory")] = step_timer(name, size, args.batch, data=in_memory)
    times = {k: [] for k in variants}
    for fn in variants.values():  # warm-up (numba compile, allocator)
        fn(), fn()
    for _ in range(args.steps):
        for k, fn in variants.items():
            times[k].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    ips = {k: args.batch / v for k, v in med.items()}

    print(f"\n{'input':>5} {'model':<12} {'variant':<20} {'img/s':>8} {'vs fp32 step':>12}")
    for (size, name, variant), v in ips.items():
        ref = ips.get((size, name, "step: fp32"))
        ratio = f"{v / ref:>11.2f}x" if ref else ""
        print(f"{size:>5} {name:<12} {variant:<20} {v:>8.1f} {ratio:>12}")
    print("\nshare of a training step spent preparing its batch (data time / (data time + fp32 step time)):")
    for size in args.sizes:
        for name in args.models:
            step = med[(size, name, "step: fp32")]
            for path in ("data: per-image", "data: in memory"):
                d = med[(size, "-", path)]
                print(f"  {size:>4} {name:<12} {path:<16} {d / (d + step):6.1%}")
    print("\npeak memory added by 3 fp32 training steps (fresh process, above the imported model):")
    memory = {}
    for size in args.sizes:
        for name in args.models:
            memory[f"{name}@{size}"] = peak_memory_mib(name, size, args.batch)
            print(f"  {name:<12} {size:>4}: {memory[f'{name}@{size}']:7.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"images_per_s": {" ".join(map(str, k)): v for k, v in ips.items()},
                                         "peak_rss_mib": memory}, indent=2))


if __name__ == "__main__":
    main()
