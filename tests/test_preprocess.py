"""Keyframe sampling, face boxes and the resumable, parallel preprocessing run."""
from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import draw_face, kill_cli_when, make_deap, rating, tree_bytes, write_ratings, write_video

from msvssm.cli import main as cli_main
from msvssm.data.faces import clamp_box, create_detector, enlarge_box, face_crop, largest_box
from msvssm.data.manifest import STATUSES
from msvssm.data.preprocess import (
    MANIFEST_COLUMNS,
    PreprocessConfig,
    PreprocessConfigError,
    preprocess_deap,
)
from msvssm.data.video import frame_index, probe_video, read_frames, sample_times

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- sampling


def test_sample_times_deap_like():
    s = sample_times(50.0, 3000)  # 60 s at 50 fps
    assert [t for t, _ in s] == [float(t) for t in range(3, 60)]
    assert [i for _, i in s] == [50 * t for t in range(3, 60)]


def test_sample_times_odd_fps_and_short_clips():
    assert sample_times(29.97, 104) == [(3.0, 90)]  # 3.5 s: only t = 3
    assert frame_index(50, 29.97) == 1499  # 1498.5 rounds half up
    assert frame_index(4, 29.97) == 120  # 119.88
    assert sample_times(7.0, int(2.9 * 7)) == []  # 2.9 s: nothing after 3 s
    assert sample_times(7.0, 22) == [(3.0, 21)]  # index 21 < 22 frames
    assert sample_times(7.0, 21) == []  # index 21 is not < 21
    assert sample_times(7.0, 0) == []
    assert sample_times(10.0, 100, start_s=0.0, step_s=2.5) == [(0.0, 0), (2.5, 25), (5.0, 50), (7.5, 75)]
    with pytest.raises(ValueError):
        sample_times(0.0, 10)


def _gray_video(path: Path, n: int, fps: float) -> Path:
    """Frame k is uniform grey 2*k (identifies the decoded frame)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (32, 24))
    for k in range(n):
        w.write(np.full((24, 32, 3), 2 * k, np.uint8))
    w.release()
    return path


@pytest.mark.parametrize("fps,seconds", [(7.0, 6.0), (29.97, 3.5)])
def test_sequential_decode_takes_the_right_frames(tmp_path, fps, seconds):
    n = int(seconds * fps)
    path = _gray_video(tmp_path / "v.avi", n, fps)
    info = probe_video(path)
    assert info.frame_count == n and abs(info.fps - fps) < 0.01
    times = sample_times(info.fps, info.frame_count)
    got = dict(read_frames(path, [i for _, i in times]))
    assert sorted(got) == [i for _, i in times]
    for idx, frame in got.items():
        assert abs(float(frame.mean()) - 2 * idx) < 1.5


def test_probe_overrides(tmp_path):
    path = _gray_video(tmp_path / "v.avi", 40, 10.0)
    info = probe_video(path, fps=5.0, frame_count=30)
    assert (info.fps, info.frame_count) == (5.0, 30)


# ----------------------------------------------------------------------------- boxes


def test_enlarge_box_twenty_percent_each_side():
    assert enlarge_box((100, 100, 200, 200), 0.2) == (80, 80, 220, 220)
    assert enlarge_box((100, 100, 200, 150), 0.2, square=False) == (80, 90, 220, 160)
    # square: the 140 x 70 enlarged box grows to 140 x 140 about its centre
    assert enlarge_box((100, 100, 200, 150), 0.2, square=True) == (80, 55, 220, 195)
    assert enlarge_box((10, 10, 15, 15), 0.2) == (9, 9, 16, 16)


def test_clamp_box_at_frame_borders():
    assert clamp_box(enlarge_box((0, 0, 50, 50)), 320, 240) == (0, 0, 60, 60)
    assert clamp_box(enlarge_box((280, 200, 320, 240)), 320, 240) == (272, 192, 320, 240)
    assert clamp_box((-5, -5, 400, 300), 320, 240) == (0, 0, 320, 240)


def test_largest_box_and_ties():
    assert largest_box([]) is None
    assert largest_box([(0, 0, 10, 10), (5, 5, 25, 25), (50, 0, 60, 10)]) == (5, 5, 25, 25)
    assert largest_box([(50, 0, 60, 10), (0, 0, 10, 10)]) == (0, 0, 10, 10)


def test_face_crop_on_drawn_faces():
    det = create_detector()
    frame = np.full((240, 400, 3), 90, np.uint8)
    draw_face(frame, 110, 120, 150)
    draw_face(frame, 310, 120, 95)
    crop, face, box, n_faces, clamped = face_crop(det, frame, size=48)
    assert n_faces == 2 and crop.shape == (48, 48, 3) and crop.dtype == np.uint8
    assert face[0] < 200  # the bigger (left) face
    assert box[2] - box[0] > face[2] - face[0]
    empty = np.full((240, 320, 3), 90, np.uint8)
    assert face_crop(det, empty)[0] is None


# ----------------------------------------------------------------------------- full run


def _manifest(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)


def test_preprocess_statuses_and_layout(preprocessed):
    m = _manifest(preprocessed)
    assert tuple(m.columns) == MANIFEST_COLUMNS
    assert set(m["status"]) < set(STATUSES)  # every status the run writes is part of the schema
    by_video = m.groupby("video")["status"].agg(lambda s: sorted(set(s)))
    assert by_video["face_video/s01/s01_trial04.avi"] == ["unreadable_video"]  # corrupt bytes
    assert by_video["face_video/s02/s02_trial04.avi"] == ["empty_video"]  # 0 bytes
    assert by_video["face_video/s02/s02_trial06.avi"] == ["missing_rating"]
    assert by_video["face_video/s01/s01_trial05.avi"] == ["too_short"]  # 2.9 s
    assert by_video["face_video/s01/s01_trial06.avi"] == ["no_face"]
    assert by_video["face_video/s02/s02_trial07.avi"] == ["ok", "truncated"]
    assert m.loc[m["status"] == "missing_video", ["participant", "trial"]].values.tolist() == [["2", "5"]]
    for v in ("s01_trial01", "s01_trial02", "s01_trial03", "s02_trial01", "s02_trial02", "s02_trial03"):
        rows = m[m["video"].str.endswith(v + ".avi")]
        assert rows["time_s"].tolist() == ["3", "4", "5"] and rows["frame_index"].tolist() == ["15", "20", "25"]
        assert (rows["status"] == "ok").all()
    ok = m[m["status"] == "ok"]
    for _, r in ok.iterrows():
        assert r["path"] == f"images/{r['label']}/s{int(r['participant']):02d}_trial{int(r['trial']):02d}_t{int(r['time_s']):03d}.png"
        img = cv2.imread(str(preprocessed / r["path"]))
        assert img.shape == (64, 64, 3)
    # only ok rows have files; nothing else lies in images/
    files = sorted(p.relative_to(preprocessed).as_posix() for p in (preprocessed / "images").rglob("*") if p.is_file())
    assert files == sorted(ok["path"])
    # rows sorted by participant, trial, time
    key = list(zip(m["participant"].astype(int), m["trial"].astype(int)))
    assert key == sorted(key)
    # labels: trial 2 is (5.0, 2.0) -> HVLA (>= 5 is high)
    assert set(m.loc[m["trial"] == "2", "label"]) == {"HVLA"}

    summary = json.loads((preprocessed / "summary.json").read_text())
    assert summary["faces_found"] == len(ok)
    assert summary["frames_sampled"] == int((m["time_s"] != "").sum())
    assert summary["missing_videos"] == ["s02_trial05"]
    assert summary["skipped_videos"]["s01_trial04"] == "unreadable_video"
    assert summary["images_per_class"]["HVLA"] == int((ok["label"] == "HVLA").sum())
    cfg = json.loads((preprocessed / "preprocess_config.json").read_text())
    assert cfg["params"]["size"] == 64 and cfg["params"]["start_s"] == 3.0
    assert json.loads((preprocessed / "classes.json").read_text()) == ["HVHA", "HVLA", "LVHA", "LVLA"]


def test_two_workers_give_identical_output(deap_root, preprocessed, tmp_path):
    out = tmp_path / "out2"
    preprocess_deap(deap_root, out, PreprocessConfig(size=64), workers=2, progress=False)
    assert tree_bytes(out) == tree_bytes(preprocessed)


def test_rerun_is_noop_and_other_params_refused(deap_root, tmp_path):
    root = tmp_path / "small"
    (root / "face_video" / "s01").mkdir(parents=True)
    shutil.copy(deap_root / "face_video" / "s01" / "s01_trial01.avi", root / "face_video" / "s01")
    write_ratings(root / "metadata_csv" / "participant_ratings.csv", [rating(1, 1, 6.0, 6.0)])
    out = tmp_path / "out"
    preprocess_deap(root, out, PreprocessConfig(size=32), workers=1, progress=False)
    before = tree_bytes(out)
    preprocess_deap(root, out, PreprocessConfig(size=32), workers=1, progress=False)
    assert tree_bytes(out) == before
    with pytest.raises(PreprocessConfigError, match="size"):
        preprocess_deap(root, out, PreprocessConfig(size=48), workers=1, progress=False)
    assert tree_bytes(out) == before
    preprocess_deap(root, out, PreprocessConfig(size=48), workers=1, progress=False, overwrite=True)
    img = cv2.imread(str(out / _manifest(out)["path"][0]))
    assert img.shape == (48, 48, 3)
    # changed ratings change the labels: old crops must not be reused silently
    write_ratings(root / "metadata_csv" / "participant_ratings.csv", [rating(1, 1, 2.0, 6.0)])
    with pytest.raises(PreprocessConfigError, match="ratings file changed"):
        preprocess_deap(root, out, PreprocessConfig(size=48), workers=1, progress=False)


def test_an_error_on_one_frame_costs_only_that_frame(deap_root, tmp_path, monkeypatch):
    import msvssm.data.faces as faces

    root = tmp_path / "small"
    (root / "face_video" / "s01").mkdir(parents=True)
    shutil.copy(deap_root / "face_video" / "s01" / "s01_trial01.avi", root / "face_video" / "s01")
    write_ratings(root / "metadata_csv" / "participant_ratings.csv", [rating(1, 1, 6.0, 6.0)])
    real_face_crop, calls = faces.face_crop, []

    def flaky_face_crop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated detector failure")
        return real_face_crop(*args, **kwargs)

    monkeypatch.setattr(faces, "face_crop", flaky_face_crop)
    out = tmp_path / "out"
    preprocess_deap(root, out, PreprocessConfig(size=32), workers=1, progress=False)
    statuses = _manifest(out)["status"].tolist()
    assert len(statuses) == len(calls) >= 3
    assert statuses[1] == "error" and statuses.count("error") == 1
    assert statuses.count("ok") >= 2
    assert "simulated detector failure" in _manifest(out)["detail"][1]


def test_simulated_kill_leftovers_are_repaired(deap_root, preprocessed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(preprocessed, out)
    # as if killed while writing s02_trial01: no part file, one image missing, temp files around
    (out / "manifest.csv").unlink()
    (out / "summary.json").unlink()
    (out / "parts" / "s02_trial01.csv").unlink()
    (out / "images" / "HVHA" / "s02_trial01_t005.png").unlink()
    (out / "images" / "HVHA" / ".s02_trial01_t005.png.abcd.tmp.png").write_bytes(b"\x89PNG half")
    (out / "parts" / ".s02_trial01.csv.xyz.tmp.csv").write_text("participant,tri")
    (out / ".manifest.csv.q.tmp.csv").write_text("partial")
    preprocess_deap(deap_root, out, PreprocessConfig(size=64), workers=1, progress=False)
    assert tree_bytes(out) == tree_bytes(preprocessed)


def test_kill_and_resume_subprocess(tmp_path):
    root = tmp_path / "deap"
    (root / "metadata_csv").mkdir(parents=True)
    ratings = []
    for t in range(1, 9):
        write_video(root / "face_video" / "s01" / f"s01_trial{t:02d}.avi", 50, 5.0, seed=t)  # 10 s: 7 frames
        ratings.append(rating(1, t, 2.0 + t % 6, 3.0 + t % 5))
    write_ratings(root / "metadata_csv" / "participant_ratings.csv", ratings)

    ref = tmp_path / "ref"
    preprocess_deap(root, ref, PreprocessConfig(size=32), workers=1, progress=False)

    out = tmp_path / "out"
    code = kill_cli_when(
        ["preprocess", "--root", str(root), "--out", str(out), "--workers", "1", "--size", "32", "--no-progress"],
        ready=lambda: any((out / "parts").glob("s01_trial*.csv")),
    )
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "manifest.csv").exists()
    done = len(list((out / "parts").glob("*.csv")))
    assert 1 <= done < 8

    # resume (in this process: the same code path as the CLI, without another torch import)
    preprocess_deap(root, out, PreprocessConfig(size=32), workers=1, progress=False)
    assert tree_bytes(out) == tree_bytes(ref)


def test_cli_preprocess_and_errors(deap_root, tmp_path, capsys):
    assert cli_main(["preprocess", "--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "face_video/sXX/sXX_trialYY.avi" in capsys.readouterr().err
    root = make_deap(tmp_path / "deap", with_problems=False)
    out = tmp_path / "out"
    rc = cli_main(["preprocess", "--root", str(root), "--out", str(out), "--workers", "2", "--size", "40", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "faces found" in printed and "frames sampled" in printed
    assert (out / "summary.json").exists()
    rc = cli_main(["preprocess", "--root", str(root), "--out", str(out), "--size", "41", "--no-progress"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err


# ----------------------------------------------------------------------------- synthetic DEAP


def test_synthetic_deap_end_to_end(synth_root, tmp_path):
    out = tmp_path / "out"
    summary = preprocess_deap(synth_root, out, PreprocessConfig(size=64), workers=2, progress=False)
    m = _manifest(out)
    frames = m[m["time_s"] != ""]
    assert summary["frames_sampled"] == len(frames) > 0
    assert summary["faces_found"] >= 0.5 * len(frames)
    # labels come from the ratings file by (Participant_id, Trial)
    ratings = pd.read_csv(synth_root / "metadata_csv" / "participant_ratings.csv")
    want = {(int(r.Participant_id), int(r.Trial)): ("HV" if r.Valence >= 5 else "LV") + ("HA" if r.Arousal >= 5 else "LA")
            for r in ratings.itertuples()}
    ok = m[m["status"] == "ok"]
    for r in ok.itertuples():
        assert r.label == want[(int(r.participant), int(r.trial))]
    # the detected faces lie where the generator drew them
    gt = pd.read_csv(synth_root / "ground_truth.csv")
    gt = gt.set_index(["participant", "trial", "frame"])
    hits = 0
    for r in ok.itertuples():
        x0, y0, x1, y1 = map(int, r.face_box.split())
        g = gt.loc[(int(r.participant), int(r.trial), int(r.frame_index))]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        hits += g.x0 <= cx <= g.x1 and g.y0 <= cy <= g.y1
    assert hits >= 0.9 * len(ok)


# ----------------------------------------------------------------------------- the job runner


def test_run_jobs_skips_finished_jobs_in_process_and_in_a_pool():
    from msvssm.data.jobs import resolve_workers, run_jobs

    calls = []
    done = {2, 4}
    out = run_jobs(lambda j: -j, range(1, 6), workers=1, is_done=lambda j: j in done,
                   initializer=calls.append, initargs=("init",), progress=False)
    assert out == [-1, -3, -5] and calls == ["init"]  # in order, initializer once, finished jobs skipped
    assert sorted(run_jobs(abs, [-3, -1, -2, -4], workers=2, progress=False)) == [1, 2, 3, 4]
    assert run_jobs(abs, [-1], is_done=lambda j: True, progress=False) == []
    assert resolve_workers(None, 0) == 1 and resolve_workers(8, 3) == 3 and resolve_workers(2, 10) == 2
