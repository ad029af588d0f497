"""DEAP layout, ratings and the paper's four classes (msvssm.data.deap)."""
from __future__ import annotations

import logging

import pytest
from conftest import RATING_HEADER, make_deap, rating, write_ratings, write_video

from msvssm.data.deap import (
    CLASS_NAMES,
    DeapFormatError,
    DeapLayoutError,
    add_labels,
    quadrant,
    read_ratings,
    scan_deap,
)


def test_class_names_fixed_order():
    assert CLASS_NAMES == ("HVHA", "HVLA", "LVHA", "LVLA")
    import msvssm.data as data

    assert data.CLASS_NAMES is CLASS_NAMES


@pytest.mark.parametrize(
    "v,a,expected",
    [
        (5.0, 5.0, "HVHA"),
        (5.0, 4.99, "HVLA"),
        (4.99, 5.0, "LVHA"),
        (4.99, 4.99, "LVLA"),
        (9.0, 1.0, "HVLA"),
        (1.0, 9.0, "LVHA"),
    ],
)
def test_quadrant_ge_five_is_high(v, a, expected):
    assert quadrant(v, a) == expected


def test_threshold_configurable():
    assert quadrant(5.0, 5.0, threshold=5.5) == "LVLA"
    assert quadrant(5.5, 5.5, threshold=5.5) == "HVHA"
    with pytest.raises(ValueError):
        quadrant(float("nan"), 5.0)


def test_labels_on_handmade_ratings_file(tmp_path):
    rows = [rating(1, t, v, a) for t, (v, a) in enumerate([(5.0, 5.0), (5.0, 3.0), (2.0, 5.0), (4.5, 4.999), (7.7, 8.1)], 1)]
    path = write_ratings(tmp_path / "participant_ratings.csv", rows)
    df = add_labels(read_ratings(path))
    assert df["label"].tolist() == ["HVHA", "HVLA", "LVHA", "LVLA", "HVHA"]
    assert df["label_index"].tolist() == [0, 1, 2, 3, 0]
    # `> 5` would have given different labels for the exact 5.0 ratings
    assert add_labels(read_ratings(path), threshold=5.0001)["label"].tolist()[:3] == ["LVLA", "LVLA", "LVLA"]


def test_missing_column_names_file_and_column(tmp_path):
    cols = [c for c in RATING_HEADER if c != "Arousal"]
    path = write_ratings(tmp_path / "participant_ratings.csv", [rating(1, 1, 5, 5)], columns=cols)
    with pytest.raises(DeapFormatError) as err:
        read_ratings(path)
    assert "Arousal" in str(err.value) and str(path) in str(err.value)


def test_duplicate_rows_rejected(tmp_path):
    path = write_ratings(tmp_path / "r.csv", [rating(1, 1, 5, 5), rating(1, 1, 6, 6)])
    with pytest.raises(DeapFormatError, match="repeated"):
        read_ratings(path)


def test_wrong_root_shows_expected_layout(tmp_path):
    with pytest.raises(DeapLayoutError) as err:
        scan_deap(tmp_path)
    msg = str(err.value)
    assert "face_video/sXX/sXX_trialYY.avi" in msg and "metadata_csv/participant_ratings.csv" in msg
    with pytest.raises(DeapLayoutError):
        scan_deap(tmp_path / "does-not-exist")


def test_scan_pairs_by_trial_not_experiment_id(deap_root):
    index = scan_deap(deap_root)
    t = index.trials.set_index(["participant", "trial"])
    # conftest: trial 2 is (5.0, 2.0) with Experiment_id 39, trial 3 is (3.0, 5.0) with Experiment_id 38
    assert t.loc[(1, 2), "label"] == "HVLA" and t.loc[(1, 2), "experiment_id"] == 39
    assert t.loc[(1, 3), "label"] == "LVHA" and t.loc[(1, 3), "experiment_id"] == 38
    assert t.loc[(1, 2), "video"] == "face_video/s01/s01_trial02.avi"


def test_scan_reports_missing_videos_and_ratings(deap_root, caplog):
    with caplog.at_level(logging.INFO, logger="msvssm"):
        index = scan_deap(deap_root)
    assert index.missing_videos == ["s02_trial05"]
    assert index.missing_ratings == ["face_video/s02/s02_trial06.avi"]
    assert index.participants_without_videos == [23]
    assert "s02_trial06.avi" in caplog.text and "participant_ratings.csv" in caplog.text
    assert "s02_trial05" in index.report()
    statuses = dict(zip(index.trials["video"].where(index.trials["video"] != "", "none"), index.trials["status"]))
    assert statuses["none"] == "missing_video"
    assert statuses["face_video/s02/s02_trial06.avi"] == "missing_rating"


def test_metadata_folder_and_blank_familiarity(tmp_path):
    root = tmp_path / "deap"
    write_video(root / "face_video" / "s01" / "s01_trial01.avi", 5, 5.0)
    write_ratings(root / "Metadata" / "participant_ratings.csv", [rating(1, 1, 5.0, 5.0)])
    index = scan_deap(root)
    assert index.ratings_file.parent.name == "Metadata"
    assert index.trials["label"].tolist() == ["HVHA"]
    assert index.class_counts() == {"HVHA": 1, "HVLA": 0, "LVHA": 0, "LVLA": 0}


def test_blank_valence_counts_as_missing_rating(tmp_path):
    root = tmp_path / "deap"
    write_video(root / "face_video" / "s01" / "s01_trial01.avi", 5, 5.0)
    r = rating(1, 1, 5.0, 5.0)
    r["Valence"] = ""
    write_ratings(root / "metadata_csv" / "participant_ratings.csv", [r])
    index = scan_deap(root)
    assert index.trials["status"].tolist() == ["missing_rating"]


def test_ignores_unrelated_files(tmp_path):
    root = make_deap(tmp_path / "deap", with_problems=False)
    (root / "face_video" / "s01" / "notes.txt").write_text("x")
    (root / "face_video" / "s01" / "s01_trial1.avi").write_text("x")  # wrong pattern (one digit)
    index = scan_deap(root)
    assert len(index.trials) == 6
    assert {p.name for p in index.ignored_files} == {"notes.txt", "s01_trial1.avi"}
