"""Memory of ``msvssm predict`` on videos: does it grow with the video's length?

    python benchmarks/bench_predict.py [--run RUN] [--lengths 10 60] [--fps 10] [--size 1280x720]
                                       [--batch-size 4] [--keep DIR]

Writes one synthetic HD clip per length with OpenCV (MJPG AVI; the repository's sample
face, ``msvssm.inside.render_sample_face``, pasted in the middle of a grey frame and
drifting a little), then predicts each clip in a fresh Python process and reports, side by
side, with the ratio longest / shortest:

* ``peak RSS growth``: the process's resident-set peak during the prediction minus its
  resident set just before it (Linux: the peak is reset through ``/proc/self/clear_refs``
  after a warm-up prediction, so model loading and first-call allocations do not count);
* ``tracemalloc peak``: the peak of Python and NumPy allocations (frames and crops are
  NumPy arrays; OpenCV's returned frames are NumPy-allocated) during the prediction.

Without ``--run`` a throwaway run is trained first (``vssm_nano`` at 32x32, one epoch on
random images: a few seconds; what it predicts does not matter here, its memory does).
The model, the detector and the frame size are fixed, so the reading, detecting and
classifying is the only thing that changes with the length: memory held per sampled
frame shows as a ratio near the ratio of sampled frames (57 / 7 for 60 s / 10 s), a
streaming prediction as a ratio near 1. The default batch size (4) is below the shortest
clip's 7 sampled frames, so every clip fills whole batches and only the length differs (a
batch the short clip never fills makes the long clip's model input, and its activations,
larger: that is the batch size's doing, not the length's). ``--batch-size`` is passed only to a
``predict_paths`` that accepts it, so the script also measures older code for comparison
(``PYTHONPATH=OLD_LIB python benchmarks/bench_predict.py``).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


# ----------------------------------------------------------------------------- inputs


def write_clip(path: Path, seconds: float, fps: float, size: tuple[int, int], seed: int = 0) -> Path:
    """An MJPG AVI of ``seconds`` s: the sample face in the middle of a grey frame, drifting by a few pixels."""
    import cv2
    import numpy as np

    from msvssm.inside import render_sample_face

    w, h = size
    face = render_sample_face()  # 320x240 BGR, one face dlib finds
    fh, fw = face.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    rng = np.random.default_rng(seed)
    frame = np.full((h, w, 3), 90, np.uint8)
    for _ in range(int(round(seconds * fps))):
        frame[:] = 90
        dx, dy = rng.integers(-6, 7, size=2)
        x0, y0 = (w - fw) // 2 + int(dx), (h - fh) // 2 + int(dy)
        frame[y0:y0 + fh, x0:x0 + fw] = face
        writer.write(frame)
    writer.release()
    return path


def train_tiny_run(root: Path) -> Path:
    from msvssm.data import make_quadrant_folder
    from msvssm.train import TrainConfig, train

    data = make_quadrant_folder(root / "data", participants=2, per_class=4)
    cfg = TrainConfig.from_profile("smoke", model="vssm_nano", data=str(data), out=str(root / "run"), image_size=32,
                                   batch_size=8, epochs=1, warmup_epochs=0.5, lr=2e-3, drop_path=0.0)
    return Path(train(cfg, progress=False))


# ----------------------------------------------------------------------------- child: one measurement


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(video: Path, warmup: Path, run: Path, batch_size: int, mode: str) -> dict:
    from msvssm.predict import predict_paths

    kwargs = {"batch_size": batch_size} if "batch_size" in inspect.signature(predict_paths).parameters else {}
    predict_paths([warmup], run, **kwargs)  # imports, model, detector, first-call allocations
    out: dict = {"batch_size": kwargs.get("batch_size")}
    if mode == "rss":
        before = _status_kb("VmRSS")
        reset = _reset_peak_rss()
        t0 = time.perf_counter()
        report = predict_paths([video], run, **kwargs)
        out["seconds"] = time.perf_counter() - t0
        peak = _status_kb("VmHWM") if reset else None
        if peak is None or before is None:  # no /proc: the whole process's peak, model loading included
            out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            out["rss_growth_mb"] = None
        else:
            out["peak_rss_mb"], out["rss_growth_mb"] = peak / 1024, (peak - before) / 1024
    else:
        import tracemalloc

        tracemalloc.start()
        report = predict_paths([video], run, **kwargs)
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    if report.failures:
        raise SystemExit(f"prediction failed: {report.failures}")
    out["rows"] = len(report.predictions)
    return out


def run_child(video: Path, warmup: Path, run: Path, batch_size: int, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--video", str(video), "--warmup", str(warmup),
           "--run", str(run), "--batch-size", str(batch_size)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished run folder (default: train a throwaway one)")
    parser.add_argument("--lengths", type=float, nargs="+", default=[10.0, 60.0], help="clip lengths, seconds")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--size", default="1280x720", help="frame size WxH")
    parser.add_argument("--batch-size", type=int, default=4, help="crops per forward pass (default 4)")
    parser.add_argument("--keep", type=Path, help="write the clips (and the throwaway run) here instead of a temp folder")
    parser.add_argument("--child", choices=["rss", "tracemalloc"], help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(args.video, args.warmup, args.run, args.batch_size, args.child)))
        return

    import msvssm.predict
    from msvssm.data.video import probe_video, sample_times

    w, h = map(int, args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        run = args.run or train_tiny_run(root / "tiny")
        warmup = write_clip(root / "warmup.avi", 4.0, args.fps, (w, h), seed=1)
        print(f"msvssm.predict from {msvssm.predict.__file__}; run {run}; clips {w}x{h} at {args.fps:g} fps, "
              f"MJPG; batch size {args.batch_size}")
        rows = []
        for seconds in args.lengths:
            clip = write_clip(root / f"clip_{seconds:g}s.avi", seconds, args.fps, (w, h))
            info = probe_video(clip)
            sampled = len(sample_times(info.fps, info.frame_count) or sample_times(info.fps, info.frame_count, start_s=0))
            rss = run_child(clip, warmup, run, args.batch_size, "rss")
            tm = run_child(clip, warmup, run, args.batch_size, "tracemalloc")
            rows.append({"length_s": seconds, "frames": info.frame_count, "sampled": sampled, "rows": rss["rows"],
                         "rss_growth_mb": rss["rss_growth_mb"], "peak_rss_mb": rss["peak_rss_mb"],
                         "tracemalloc_peak_mb": tm["tracemalloc_peak_mb"], "seconds": rss["seconds"],
                         "MB": os.path.getsize(clip) / 2**20})
            print(f"  {seconds:g} s: {rows[-1]}", flush=True)

    def fmt(v):
        return "n/a" if v is None else f"{v:.1f}"

    print()
    print(f"| clip | sampled frames | peak RSS growth (MB) | peak RSS (MB) | tracemalloc peak (MB) | predict time (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['length_s']:g} s ({r['frames']} frames, {r['MB']:.1f} MB) | {r['sampled']} | "
              f"{fmt(r['rss_growth_mb'])} | {fmt(r['peak_rss_mb'])} | {fmt(r['tracemalloc_peak_mb'])} | "
              f"{r['seconds']:.1f} |")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]

        def ratio(key):
            return "n/a" if not (a[key] and b[key]) else f"{b[key] / a[key]:.2f}"

        print(f"\n{b['length_s']:g} s / {a['length_s']:g} s: sampled frames x{b['sampled'] / a['sampled']:.2f}, "
              f"peak RSS growth x{ratio('rss_growth_mb')}, tracemalloc peak x{ratio('tracemalloc_peak_mb')}")


if __name__ == "__main__":
    main()
