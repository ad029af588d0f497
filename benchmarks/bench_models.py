"""The cost table: VSSM, MS-VSSM, RepViT and DilateFormer side by side, on the CPU or a GPU.

    python benchmarks/bench_models.py [--sizes 64 112 224] [--out build/bench/models] [--iters 3]
    python benchmarks/bench_models.py --device cuda --amp bf16 --sizes 224 --batch 128 --train-batch 128 \
        --train-published --models vssm_tiny msvssm_tiny          # what make gpu-check runs

Two groups of models, each measured in one run, round-robin (every repeat visits every
configuration, each figure is the median over repeats, so machine noise hits all alike):

``cpu``        vssm_nano, msvssm_nano, repvit_nano, dilateformer_nano (4 classes), at every
               input size: parameters, GFLOPs per image, inference and training throughput.
``published``  vssm_tiny, msvssm_tiny, repvit_m0_9, dilateformer_tiny (1000 classes, as
               published) at 224: parameters and GFLOPs next to the published figures, and
               inference throughput; training throughput is skipped (tens of seconds per step
               on 2 cores; ``--train-published`` measures it).

RepViT is counted and timed for inference in its fused form (``msvssm.models.repvit.fuse``),
as it is published, and trained unfused. GFLOPs are fvcore multiply-accumulates
(``msvssm.flops.count_flops``: the selective scan counted as VMamba does, attention as the
explicit matmuls DilateFormer is written with). Inference: eval, no_grad; training: forward,
backward and an AdamW step in train mode. Writes ``OUT.csv`` and ``OUT.md`` and prints the
table.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import statistics
import time
from pathlib import Path

import torch

from msvssm.flops import count_flops
from msvssm.models import build_model
from msvssm.costs import inference_form
from msvssm.utils import synchronize
from msvssm.ops.registry import resolve_backend

CPU_MODELS = ("vssm_nano", "msvssm_nano", "repvit_nano", "dilateformer_nano")
PUBLISHED_MODELS = ("vssm_tiny", "msvssm_tiny", "repvit_m0_9", "dilateformer_tiny")
# (params, GFLOPs) at 224 with 1000 classes, from the papers (RepViT: fused).
PUBLISHED = {
    "vssm_tiny": (30.2e6, 4.9),
    "repvit_m0_9": (5.1e6, 0.8),
    "dilateformer_tiny": (17.2e6, 3.2),
}
# VMamba-T's training throughput as its paper reports it (A100, batch 128, mixed precision), in img/s.
PUBLISHED_TRAIN_IMG_S = {"vssm_tiny": 571}
COLUMNS = ("group", "model", "input", "classes", "params_M", "GFLOPs", "published", "infer_img_s", "train_img_s")


def make(name: str, num_classes: int, backend: str, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(model to train, model for inference) on ``device``: RepViT's inference form is fused."""
    kwargs = {"scan_backend": backend} if "vssm" in name else {}
    torch.manual_seed(0)
    model = build_model(name, num_classes=num_classes, **kwargs)
    infer = inference_form(name, model) if name.startswith("repvit") else model
    return model.to(device), infer.to(device)


def autocast(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def infer_timer(model, batch: int, size: int, device: torch.device, amp: str):
    x = torch.randn(batch, 3, size, size, device=device)

    def step() -> float:
        model.eval()
        synchronize(device)
        t = time.perf_counter()
        with torch.no_grad(), autocast(device, amp):
            model(x)
        synchronize(device)  # CUDA runs asynchronously: time the work, not its launch
        return time.perf_counter() - t

    return step


def train_timer(model, batch: int, size: int, num_classes: int, device: torch.device, amp: str):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None

    def step() -> float:
        model.train()
        synchronize(device)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        synchronize(device)
        return time.perf_counter() - t

    return step


def flops(model, size: int, device: torch.device) -> dict:
    """fvcore's count on the CPU (its tracer and the scan's FLOP rule need no GPU); the model goes back."""
    cost = count_flops(model.cpu(), (3, size, size))
    model.to(device)
    return cost


def markdown(rows: list[dict]) -> str:
    head = ["group", "model", "input", "classes", "params (M)", "GFLOPs", "published", "infer img/s", "train img/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 112, 224], help="input sizes for the cpu group")
    parser.add_argument("--batch", type=int, default=16, help="inference batch")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3, help="timed repeats per configuration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--backend", default=None, help="scan backend (default: env var, then auto)")
    parser.add_argument("--train-published", action="store_true", help="also time training of the published sizes")
    parser.add_argument("--skip-published", action="store_true")
    parser.add_argument("--out", default="build/bench/models", help="writes OUT.csv and OUT.md")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"),
                        help="autocast dtype for inference and training (VMamba times training with AMP)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="only these (of the cpu and published groups), e.g. vssm_tiny msvssm_tiny")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no usable GPU (msvssm info says why)")
    backend = resolve_backend(args.backend, device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; scan backend: {backend}; amp: {args.amp}; "
          f"batch {args.batch} (inference), {args.train_batch} (training); {args.iters} timed repeats, medians")
    wanted = (lambda name: True) if args.models is None else (lambda name: name in args.models)

    configs = []
    for name in filter(wanted, CPU_MODELS):
        train_model, infer_model = make(name, 4, backend, device)
        for size in args.sizes:
            cost = flops(infer_model, size, device)
            configs.append(dict(group="cpu", model=name + (" (fused)" if infer_model is not train_model else ""),
                                input=size, classes=4, cost=cost,
                                infer=infer_timer(infer_model, args.batch, size, device, args.amp),
                                train=train_timer(train_model, args.train_batch, size, 4, device, args.amp)))
    if not args.skip_published:
        for name in filter(wanted, PUBLISHED_MODELS):
            train_model, infer_model = make(name, 1000, backend, device)
            cost = flops(infer_model, 224, device)
            configs.append(dict(group="published", model=name + (" (fused)" if infer_model is not train_model else ""),
                                input=224, classes=1000, cost=cost, key=name,
                                infer=infer_timer(infer_model, args.batch, 224, device, args.amp),
                                train=train_timer(train_model, args.train_batch, 224, 1000, device, args.amp)
                                if args.train_published else None))
    for c in configs:
        c["infer_t"], c["train_t"] = [], []
        for _ in range(args.warmup):
            c["infer"]()
            if c["train"] is not None:
                c["train"]()
    for _ in range(args.iters):
        for c in configs:  # round-robin: noise is shared
            c["infer_t"].append(c["infer"]())
            if c["train"] is not None:
                c["train_t"].append(c["train"]())

    rows = []
    for c in configs:
        pub = PUBLISHED.get(c.get("key", ""))
        rows.append(dict(
            group=c["group"], model=c["model"], input=c["input"], classes=c["classes"],
            params_M=f"{c['cost']['params'] / 1e6:.2f}", GFLOPs=f"{c['cost']['flops'] / 1e9:.3f}",
            published=f"{pub[0] / 1e6:.1f}M / {pub[1]:.1f}G" if pub else "",
            infer_img_s=f"{args.batch / statistics.median(c['infer_t']):.1f}",
            train_img_s=f"{args.train_batch / statistics.median(c['train_t']):.1f}" if c["train_t"] else "-",
        ))
    table = markdown(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    notes = (
        "\nGFLOPs: fvcore multiply-accumulates per image (scan as VMamba counts it: 9*b*l*d*n + b*d*l). "
        "RepViT: fused for FLOPs and inference, unfused for training. "
        "Published group: 1000 classes, training not timed unless --train-published. "
        f"Device: {where}, amp {args.amp}. Throughput on a shared machine is noisy: compare rows of one run, "
        "not across runs."
    )
    out.with_suffix(".md").write_text(table + "\n" + notes + "\n")
    print()
    print(table)
    print(notes)
    for r, c in zip(rows, configs):
        key = c.get("key", "")
        if c["train_t"] and key:
            ratio = f" (VMamba-T published: {PUBLISHED_TRAIN_IMG_S['vssm_tiny']} img/s on an A100; ratio " \
                    f"{float(r['train_img_s']) / PUBLISHED_TRAIN_IMG_S['vssm_tiny']:.2f})"
            print(f"training {key} at 224 on {where}: {r['train_img_s']} img/s{ratio}")
    print(f"\nwrote {out.with_suffix('.csv')} and {out.with_suffix('.md')}  ({time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
