"""DEAP as released: the face-video folder, the ratings file and the paper's four classes.

Layout expected under a DEAP root (the folder you unpacked the release into)::

    ROOT/
      face_video/s01/s01_trial01.avi ... s22/s22_trial40.avi
      metadata_csv/participant_ratings.csv      (some copies: Metadata/participant_ratings.csv)

``participant_ratings.csv`` has the columns ``Participant_id, Trial, Experiment_id,
Start_time, Valence, Arousal, Dominance, Liking, Familiarity``. ``Trial`` is the
presentation order and is the ``YY`` of ``sXX_trialYY.avi``; ``Experiment_id`` is
the music-video id and must *not* be used to find a video's rating.

DEAP has face videos for participants 1-22 only, and some of the last trials of
s03, s05, s11 and s14 have no video: missing videos are reported, never fatal.

Labels follow the paper (section 4.1.1): valence and arousal are binarised with
``>= threshold`` (default 5.0) as *high*, then combined into four classes in the
fixed order :data:`CLASS_NAMES`. Ratings of exactly 5.0 are therefore *high*.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..utils import get_logger

log = get_logger("data.deap")

#: The four classes, in the order used for label indices everywhere.
CLASS_NAMES: tuple[str, ...] = ("HVHA", "HVLA", "LVHA", "LVLA")
#: The paper's binarisation threshold (``>=`` is high).
DEFAULT_THRESHOLD = 5.0

#: Exact columns of DEAP's ``participant_ratings.csv``.
RATING_COLUMNS: tuple[str, ...] = (
    "Participant_id",
    "Trial",
    "Experiment_id",
    "Start_time",
    "Valence",
    "Arousal",
    "Dominance",
    "Liking",
    "Familiarity",
)
RATINGS_FILE = "participant_ratings.csv"
METADATA_DIRS = ("metadata_csv", "Metadata")
VIDEO_DIR = "face_video"
VIDEO_RE = re.compile(r"^s(\d{2})_trial(\d{2})\.avi$", re.IGNORECASE)
PARTICIPANT_DIR_RE = re.compile(r"^s(\d{2})$", re.IGNORECASE)

EXPECTED_LAYOUT = """expected DEAP layout:
  ROOT/face_video/sXX/sXX_trialYY.avi          (e.g. face_video/s01/s01_trial01.avi)
  ROOT/metadata_csv/participant_ratings.csv    (or ROOT/Metadata/participant_ratings.csv)"""


class DeapLayoutError(FileNotFoundError):
    """The folder does not look like a DEAP release."""


class DeapFormatError(ValueError):
    """The ratings file does not have DEAP's format."""


# ----------------------------------------------------------------------------- labels


def quadrant(valence: float, arousal: float, threshold: float = DEFAULT_THRESHOLD) -> str:
    """The paper's class name for one rating pair: ``>= threshold`` is high.

    >>> quadrant(5.0, 4.99)
    'HVLA'
    """
    if valence is None or arousal is None or math.isnan(valence) or math.isnan(arousal):
        raise ValueError("valence and arousal must be numbers, got NaN/None")
    v = "HV" if valence >= threshold else "LV"
    a = "HA" if arousal >= threshold else "LA"
    return v + a


def label_index(name: str) -> int:
    """Index of a class name in :data:`CLASS_NAMES`."""
    return CLASS_NAMES.index(name)


def add_labels(ratings: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Return a copy of ``ratings`` with ``label`` (class name) and ``label_index`` columns."""
    out = ratings.copy()
    out["label"] = [quadrant(float(v), float(a), threshold) for v, a in zip(out["Valence"], out["Arousal"])]
    out["label_index"] = [label_index(name) for name in out["label"]]
    return out


# ----------------------------------------------------------------------------- files


def find_ratings_file(root: str | Path) -> Path:
    """``ROOT/metadata_csv/participant_ratings.csv`` (or ``ROOT/Metadata/...``)."""
    root = Path(root)
    for sub in METADATA_DIRS:
        candidate = root / sub / RATINGS_FILE
        if candidate.is_file():
            return candidate
    raise DeapLayoutError(f"no {RATINGS_FILE} under {root}\n{EXPECTED_LAYOUT}")


def find_video_dir(root: str | Path) -> Path:
    root = Path(root)
    video_dir = root / VIDEO_DIR
    if not video_dir.is_dir():
        raise DeapLayoutError(f"no {VIDEO_DIR}/ folder under {root}\n{EXPECTED_LAYOUT}")
    return video_dir


def read_ratings(path: str | Path) -> pd.DataFrame:
    """Read and validate DEAP's ``participant_ratings.csv``.

    Checks that every column of :data:`RATING_COLUMNS` is present, that
    ``Participant_id``/``Trial``/``Experiment_id`` are integers and that each
    (participant, trial) appears once. Valence/Arousal may be blank for a row; such
    a row counts as a missing rating for its video. ``Familiarity`` may be blank.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except Exception as exc:  # pandas raises several types for a bad file
        raise DeapFormatError(f"cannot read ratings file {path}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in RATING_COLUMNS if c not in frame.columns]
    if missing:
        raise DeapFormatError(
            f"ratings file {path} lacks column(s) {missing}; expected DEAP's columns {list(RATING_COLUMNS)}, "
            f"found {list(frame.columns)}"
        )
    for col in ("Participant_id", "Trial", "Experiment_id"):
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() | (values != values.round())
        if bad.any():
            rows = (frame.index[bad] + 2).tolist()[:5]  # +2: header line and 1-based lines
            raise DeapFormatError(f"ratings file {path}: column {col} must hold integers (bad at line(s) {rows})")
        frame[col] = values.astype(int)
    for col in ("Start_time", "Valence", "Arousal", "Dominance", "Liking", "Familiarity"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    dup = frame.duplicated(["Participant_id", "Trial"], keep=False)
    if dup.any():
        pairs = frame.loc[dup, ["Participant_id", "Trial"]].drop_duplicates().values.tolist()[:5]
        raise DeapFormatError(f"ratings file {path}: (Participant_id, Trial) repeated: {pairs}")
    return frame.sort_values(["Participant_id", "Trial"]).reset_index(drop=True)


@dataclass(frozen=True)
class VideoFile:
    participant: int
    trial: int
    path: Path

    @property
    def name(self) -> str:
        return f"s{self.participant:02d}_trial{self.trial:02d}"


def find_videos(root: str | Path) -> tuple[list[VideoFile], list[Path]]:
    """All ``face_video/sXX/sXX_trialYY.avi`` files, sorted, plus the files that were ignored.

    The participant and trial are taken from the file name.
    """
    video_dir = find_video_dir(root)
    videos: list[VideoFile] = []
    ignored: list[Path] = []
    for sub in sorted(p for p in video_dir.iterdir() if p.is_dir()):
        if not PARTICIPANT_DIR_RE.match(sub.name):
            ignored.append(sub)
            continue
        for f in sorted(sub.iterdir()):
            m = VIDEO_RE.match(f.name)
            if m and f.is_file():
                videos.append(VideoFile(int(m.group(1)), int(m.group(2)), f))
            else:
                ignored.append(f)
    videos.sort(key=lambda v: (v.participant, v.trial))
    return videos, ignored


def participant_dirs(root: str | Path) -> list[int]:
    """Participants that have a ``face_video/sXX`` folder."""
    video_dir = find_video_dir(root)
    out = []
    for sub in video_dir.iterdir():
        m = PARTICIPANT_DIR_RE.match(sub.name)
        if m and sub.is_dir():
            out.append(int(m.group(1)))
    return sorted(out)


# ----------------------------------------------------------------------------- index

#: ``status`` values of :func:`scan_deap`'s trial table.
TRIAL_OK, TRIAL_MISSING_VIDEO, TRIAL_MISSING_RATING = "ok", "missing_video", "missing_rating"


@dataclass
class DeapIndex:
    """What :func:`scan_deap` found: one row per trial that has a video or a rating.

    ``trials`` columns: participant, trial, experiment_id, valence, arousal, label,
    video (path relative to root, "" if missing), status (``ok``, ``missing_video``,
    ``missing_rating``). Participants without any ``face_video/sXX`` folder (DEAP's
    s23-s32) are listed in ``participants_without_videos`` and left out of ``trials``.
    """

    root: Path
    ratings_file: Path
    trials: pd.DataFrame
    participants_without_videos: list[int] = field(default_factory=list)
    ignored_files: list[Path] = field(default_factory=list)

    @property
    def missing_videos(self) -> list[str]:
        t = self.trials[self.trials["status"] == TRIAL_MISSING_VIDEO]
        return [f"s{p:02d}_trial{q:02d}" for p, q in zip(t["participant"], t["trial"])]

    @property
    def missing_ratings(self) -> list[str]:
        t = self.trials[self.trials["status"] == TRIAL_MISSING_RATING]
        return list(t["video"])

    def class_counts(self) -> dict[str, int]:
        """Trials per class among trials with both a video and a rating."""
        ok = self.trials[self.trials["status"] == TRIAL_OK]
        return {c: int((ok["label"] == c).sum()) for c in CLASS_NAMES}

    def report(self) -> str:
        lines = [
            f"DEAP root {self.root}: {int((self.trials['video'] != '').sum())} videos, "
            f"{len(self.trials)} trials with a video or a rating",
        ]
        if self.missing_videos:
            lines.append(f"missing videos ({len(self.missing_videos)}): {', '.join(self.missing_videos)}")
        if self.missing_ratings:
            lines.append(
                f"videos without a rating row in {self.ratings_file} ({len(self.missing_ratings)}): "
                f"{', '.join(self.missing_ratings)}"
            )
        if self.participants_without_videos:
            ids = ", ".join(f"s{p:02d}" for p in self.participants_without_videos)
            lines.append(f"participants with ratings but no face_video folder: {ids}")
        return "\n".join(lines)


def scan_deap(root: str | Path, threshold: float = DEFAULT_THRESHOLD) -> DeapIndex:
    """Pair each video with its rating row (by ``Participant_id`` and ``Trial``) and label it."""
    root = Path(root)
    if not root.is_dir():
        raise DeapLayoutError(f"DEAP root {root} is not a folder\n{EXPECTED_LAYOUT}")
    video_dir_missing = not (root / VIDEO_DIR).is_dir()
    ratings_missing = not any((root / d / RATINGS_FILE).is_file() for d in METADATA_DIRS)
    if video_dir_missing or ratings_missing:
        what = " and ".join(
            w for w, m in ((f"{VIDEO_DIR}/", video_dir_missing), (f"{RATINGS_FILE}", ratings_missing)) if m
        )
        raise DeapLayoutError(f"{root} does not look like a DEAP release: no {what}\n{EXPECTED_LAYOUT}")
    ratings_file = find_ratings_file(root)
    ratings = read_ratings(ratings_file)
    videos, ignored = find_videos(root)
    with_dirs = set(participant_dirs(root))
    by_key = {(int(r.Participant_id), int(r.Trial)): r for r in ratings.itertuples(index=False)}
    video_keys = {(v.participant, v.trial): v for v in videos}

    rows = []
    for key in sorted(set(by_key) | set(video_keys)):
        p, t = key
        if key not in video_keys and p not in with_dirs:
            continue  # participants without face video at all (s23-s32)
        r = by_key.get(key)
        v = video_keys.get(key)
        has_rating = r is not None and not (math.isnan(r.Valence) or math.isnan(r.Arousal))
        row = {
            "participant": p,
            "trial": t,
            "experiment_id": int(r.Experiment_id) if r is not None else None,
            "valence": float(r.Valence) if has_rating else None,
            "arousal": float(r.Arousal) if has_rating else None,
            "label": quadrant(float(r.Valence), float(r.Arousal), threshold) if has_rating else "",
            "video": v.path.relative_to(root).as_posix() if v is not None else "",
        }
        if v is None:
            row["status"] = TRIAL_MISSING_VIDEO
        elif not has_rating:
            row["status"] = TRIAL_MISSING_RATING
        else:
            row["status"] = TRIAL_OK
        rows.append(row)
    trials = pd.DataFrame(
        rows, columns=["participant", "trial", "experiment_id", "valence", "arousal", "label", "video", "status"]
    )
    rated_participants = sorted({p for p, _ in by_key})
    index = DeapIndex(
        root=root,
        ratings_file=ratings_file,
        trials=trials,
        participants_without_videos=[p for p in rated_participants if p not in with_dirs],
        ignored_files=ignored,
    )
    for name in index.missing_ratings:
        log.warning("video %s has no rating row (or blank Valence/Arousal) in %s", name, ratings_file)
    if index.missing_videos:
        log.info("missing videos (%d): %s", len(index.missing_videos), ", ".join(index.missing_videos))
    if ignored:
        log.debug("ignored %d file(s) under face_video/: %s", len(ignored), [str(p) for p in ignored[:10]])
    return index


def class_names_for(labels: Sequence[str]) -> list[str]:
    """:data:`CLASS_NAMES` if every label is a DEAP class, else the sorted label names."""
    labels = set(labels)
    if labels <= set(CLASS_NAMES):
        return list(CLASS_NAMES)
    return sorted(labels)
