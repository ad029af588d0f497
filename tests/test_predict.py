"""``msvssm predict``: faces found with dlib in images and videos, probabilities out, clear per-file errors.

Also: photos read upright (EXIF orientation), every face of a photo, videos streamed frame by frame
with the crops classified in fixed-size batches.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import draw_face, write_video
from test_train import make_image_folder, tiny_config

SAMPLE_PHOTO = Path(__file__).resolve().parents[1] / "assets" / "sample_face.jpg"  # 320x240, one face


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from msvssm.train import train

    root = tmp_path_factory.mktemp("predict")
    data = make_image_folder(root / "data", participants=2, per_class=4)
    return train(tiny_config(data, root / "run", epochs=1), progress=False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    import cv2
    from PIL import Image

    root = tmp_path_factory.mktemp("inputs")
    face = np.full((220, 260, 3), 90, np.uint8)
    draw_face(face, 130, 115, 110)  # BGR drawing
    cv2.imwrite(str(root / "face.png"), face)
    Image.fromarray(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)).save(root / "grey.png")
    rgba = np.dstack([cv2.cvtColor(face, cv2.COLOR_BGR2RGB), np.full(face.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    cv2.imwrite(str(root / "empty.png"), np.full((200, 200, 3), 90, np.uint8))
    (root / "notes.txt").write_text("not an image")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    write_video(root / "clip.avi", n_frames=25, fps=5.0)  # 5 s: frames at t = 3 and 4 s
    return {p.stem: p for p in root.iterdir()}


def test_predicts_images_and_videos_and_reports_each_failure(run_dir, inputs, tmp_path):
    from msvssm.predict import predict_paths

    report = predict_paths([inputs[k] for k in ("face", "grey", "rgba", "clip", "empty", "notes", "broken")],
                           run_dir, out=tmp_path, annotate=True)
    by_file = {}
    for p in report.predictions:
        by_file.setdefault(Path(p.file).stem, []).append(p)
    assert set(by_file) == {"face", "grey", "rgba", "clip"}
    assert [p.frame for p in by_file["clip"]] == [15, 20]  # 1 frame/s from second 3 at 5 fps
    for p in report.predictions:
        assert p.label in p.probabilities and abs(sum(p.probabilities.values()) - 1) < 1e-4
        assert p.probabilities[p.label] == max(p.probabilities.values())
    assert "converted from L" in by_file["grey"][0].note and "converted from RGBA" in by_file["rgba"][0].note
    assert set(map(lambda f: Path(f).stem, report.failures)) == {"empty", "notes", "broken"}
    assert "no face found" in report.failures[str(inputs["empty"])]
    assert "not an image" in report.failures[str(inputs["notes"])]
    saved = json.loads((tmp_path / "predictions.json").read_text())
    assert len(saved["predictions"]) == len(report.predictions) and len(saved["failures"]) == 3
    assert (tmp_path / "face_annotated.png").exists()


def test_same_face_same_probabilities_in_colour_and_after_rgba(run_dir, inputs):
    from msvssm.predict import predict_paths

    report = predict_paths([inputs["face"], inputs["rgba"]], run_dir)
    a, b = report.predictions
    assert a.probabilities == b.probabilities  # an opaque alpha channel changes nothing


def test_cli_exit_status_and_messages(run_dir, inputs, capsys):
    from msvssm.cli import main

    assert main(["predict", str(inputs["face"]), "--run", str(run_dir)]) == 0
    assert main(["predict", str(inputs["face"]), str(inputs["notes"]), "--run", str(run_dir)]) == 1
    out = capsys.readouterr().out
    assert "failed:" in out and "notes.txt" in out
    assert main(["predict", str(inputs["face"]), "--run", str(run_dir.parent)]) == 2
    assert "no best.pt" in capsys.readouterr().out
    assert main(["predict", str(inputs["clip"]), "--run", str(run_dir), "--batch-size", "1", "--video-summary"]) == 0
    out = capsys.readouterr().out
    assert "frames with a face" in out and "2/2" in out and "| box" not in out  # the mean only, no frame rows


def test_exif_orientation_is_applied_before_detection(run_dir, tmp_path):
    """A phone's portrait photo: pixels stored sideways plus an Orientation tag; read upright, same prediction."""
    from PIL import Image

    from msvssm.predict import predict_paths

    with Image.open(SAMPLE_PHOTO) as im:
        upright = im.convert("RGB")
    upright.save(tmp_path / "upright.jpg", quality=95)
    # Orientation 6: the viewer turns the stored picture 90 degrees clockwise, so it is stored turned counter-clockwise.
    for orientation, stored in ((6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)):
        exif = Image.Exif()
        exif[0x0112] = orientation
        upright.transpose(stored).save(tmp_path / f"tagged{orientation}.jpg", quality=95, exif=exif)
    with Image.open(tmp_path / "tagged6.jpg") as im:
        assert im.size == (240, 320) and im.getexif()[0x0112] == 6  # sideways in pixels, tagged

    report = predict_paths([tmp_path / n for n in ("upright.jpg", "tagged6.jpg", "tagged8.jpg")], run_dir)
    assert not report.failures, report.failures
    by_file = {Path(p.file).stem: p for p in report.predictions}
    assert sorted(by_file) == ["tagged6", "tagged8", "upright"] and len(report.predictions) == 3
    ref = by_file["upright"]
    for name in ("tagged6", "tagged8"):
        p = by_file[name]
        assert np.allclose(p.face_box, ref.face_box, atol=2), (p.face_box, ref.face_box)  # upright coordinates
        assert p.label == ref.label and "EXIF orientation" in p.note
        for c, v in ref.probabilities.items():  # the two JPEG encodings differ by ~0.3 grey levels on average
            assert abs(p.probabilities[c] - v) < 0.02, (name, c, p.probabilities[c], v)


def test_every_face_of_a_photo_is_predicted(run_dir, tmp_path):
    from PIL import Image

    from msvssm.predict import predict_paths

    with Image.open(SAMPLE_PHOTO) as im:
        face = np.asarray(im.convert("RGB"))
    Image.fromarray(np.concatenate([face, face], axis=1)).save(tmp_path / "two.png")  # 640x240, two people

    report = predict_paths([tmp_path / "two.png", SAMPLE_PHOTO], run_dir, out=tmp_path / "out", annotate=True)
    assert not report.failures, report.failures
    two = [p for p in report.predictions if Path(p.file).name == "two.png"]
    (single,) = [p for p in report.predictions if Path(p.file) == SAMPLE_PHOTO]
    assert [p.face for p in two] == [0, 1] and single.face == 0
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in (p.face_box for p in two)]
    assert areas[0] >= areas[1]  # face 0 is the largest
    left, right = sorted(two, key=lambda p: p.face_box[0])
    assert left.face_box[2] <= 320 <= right.face_box[0]  # one face in each half
    assert left.face_box == single.face_box and left.probabilities == single.probabilities  # the same crop
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [p["face"] for p in saved["predictions"] if p["file"].endswith("two.png")] == [0, 1]
    assert (tmp_path / "out" / "two_annotated.png").exists()


def test_video_is_streamed_and_its_crops_classified_in_fixed_batches(run_dir, tmp_path, monkeypatch):
    """A 60 s clip (57 sampled frames): never more than batch_size frames decoded and not yet classified."""
    import msvssm.data.video as video
    from msvssm.predict import FacePredictor, predict_paths

    clip = write_video(tmp_path / "long.avi", n_frames=120, fps=2.0)  # frames sampled at t = 3, 4, ..., 59 s
    counts = {"decoded": 0, "classified": 0}
    in_flight: list[int] = []  # at each decoded frame: frames decoded whose face is not classified yet
    batches: list[int] = []
    real_read, real_probabilities = video.read_frames, FacePredictor.probabilities

    def counting_read(path, indices):
        for item in real_read(path, indices):
            counts["decoded"] += 1
            in_flight.append(counts["decoded"] - counts["classified"])
            yield item

    def counting_probabilities(self, crops):
        batches.append(len(crops))
        out = real_probabilities(self, crops)
        counts["classified"] += len(crops)
        return out

    monkeypatch.setattr(video, "read_frames", counting_read)
    monkeypatch.setattr(FacePredictor, "probabilities", counting_probabilities)
    report = predict_paths([clip], run_dir, batch_size=5)

    assert not report.failures, report.failures
    assert [p.frame for p in report.predictions] == [2 * t for t in range(3, 60)]  # 57 rows, in order
    assert counts["decoded"] == 57 and max(in_flight) <= 5, in_flight
    assert batches == [5] * 11 + [2]  # fixed-size batches, never the whole video at once
    summary = report.videos[str(clip)]
    assert (summary.frames_sampled, summary.frames_with_face) == (57, 57)
    mean = {c: np.mean([p.probabilities[c] for p in report.predictions]) for c in summary.probabilities}
    assert all(abs(summary.probabilities[c] - mean[c]) < 1e-5 for c in mean)
    assert summary.label == max(mean, key=mean.get)

    in_flight.clear()
    only_mean = predict_paths([clip], run_dir, batch_size=5, frame_rows=False)
    assert only_mean.predictions == [] and only_mean.videos[str(clip)] == summary and max(in_flight) <= 5
