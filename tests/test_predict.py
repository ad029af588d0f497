"""``msvssm predict``: faces found with dlib in images and videos, probabilities out, clear per-file errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import draw_face, write_video
from test_train import make_image_folder, tiny_config


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
