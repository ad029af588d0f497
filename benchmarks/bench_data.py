"""Data pipeline benchmark: synthetic DEAP generation time and preprocessing throughput.

    python benchmarks/bench_data.py [--scale default|tiny|deap] [--workers 1 2] [--keep DIR]

Generates the synthetic DEAP of the chosen scale in a temporary folder, then runs
``preprocess_deap`` on it once per worker count (fresh output folder each time),
prints frames/s and the speed-up relative to the first worker count, and checks
that every run wrote byte-identical output. Before that, ``measure_dlib_detection``
compares dlib's detections on the generated frames with the generator's ground truth
(``--detection-stride``; docs/synthetic_deap.md, "Detection by dlib").
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


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def measure_dlib_detection(out_dir, frame_stride: int = 1, max_videos: int | None = None) -> dict[str, float]:
    """Run dlib's frontal detector (no upsampling) on generated frames and compare with ground truth.

    Returns the detection rate on visible frames (a detection counts when its
    IoU with the ground-truth box is > 0.3), the mean IoU of those, and the
    false-detection rate on frames marked not visible.
    """
    import cv2
    import dlib
    import numpy as np
    import pandas as pd

    from msvssm.data.synth import video_path

    out = Path(out_dir)
    gt = pd.read_csv(out / "ground_truth.csv")
    gt = gt[gt.has_video == 1]
    det = dlib.get_frontal_face_detector()
    n_vis = n_hit = n_invis = n_false = 0
    ious: list[float] = []
    videos = list(gt.groupby(["participant", "trial"], sort=True))
    if max_videos is not None:
        videos = videos[:max_videos]
    for (p, trial), g in videos:
        cap = cv2.VideoCapture(str(video_path(out, int(p), int(trial))))
        rows = g.set_index("frame")
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % frame_stride == 0:
                r = rows.loc[i]
                dets = det(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), 0)
                if r.visible:
                    n_vis += 1
                    box = (r.x0, r.y0, r.x1, r.y1)
                    best = max((_iou(box, (d.left(), d.top(), d.right(), d.bottom())) for d in dets), default=0.0)
                    if best > 0.3:
                        n_hit += 1
                        ious.append(best)
                else:
                    n_invis += 1
                    n_false += int(len(dets) > 0)
            i += 1
        cap.release()
    return {
        "visible_frames": n_vis,
        "detection_rate": n_hit / max(n_vis, 1),
        "mean_iou": float(np.mean(ious)) if ious else 0.0,
        "invisible_frames": n_invis,
        "detections_on_invisible": n_false / max(n_invis, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="default", choices=("tiny", "default", "deap"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gen-workers", type=int, default=None, help="workers for generation (default: all cores)")
    parser.add_argument("--detection-stride", type=int, default=5,
                        help="dlib detection vs ground truth on every Nth generated frame (0: skip)")
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
        if args.detection_stride > 0:
            m = measure_dlib_detection(root, frame_stride=args.detection_stride)
            print(f"dlib on every {args.detection_stride}th frame: {m['detection_rate']:.1%} of {m['visible_frames']} "
                  f"visible faces found (mean IoU {m['mean_iou']:.2f}), detections on "
                  f"{m['detections_on_invisible']:.1%} of {m['invisible_frames']} frames without a face")

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
