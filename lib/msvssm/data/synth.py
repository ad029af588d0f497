"""A synthetic stand-in for DEAP's face videos and ratings, in DEAP's on-disk layout.

DEAP needs a licence, so the course ships this generator. It writes::

    OUT/face_video/sXX/sXX_trialYY.avi        MJPG videos readable by OpenCV
    OUT/metadata_csv/participant_ratings.csv   DEAP's columns, one row per trial
    OUT/ground_truth.csv                       per-frame face boxes, visibility, felt state, cues
    OUT/synth_meta.json                        seed, scale, parameters, generator version

``ground_truth.csv`` and ``synth_meta.json`` lie beside DEAP's folders, never
inside them, so a DEAP reader sees exactly what the real release holds. They
are for tests and diagnostics; a model must never read them.

How the faces carry the labels, the label noise, the per-participant
differences and the nuisances are documented in ``docs/synthetic_deap.md``.

Determinism: every random draw comes from a ``numpy`` generator seeded by
``SeedSequence(seed, spawn_key=(stream, participant[, trial]))``, so a video
depends only on (seed, parameters, participant, trial), never on the number
of workers or on which videos already exist.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..optional import require
from ..utils import atomic_path, atomic_write_text, get_logger, remove_atomic_leftovers
from . import face_render as fr
from .deap import CLASS_NAMES, DEFAULT_THRESHOLD, RATING_COLUMNS
from .jobs import run_jobs

GENERATOR_VERSION = "1.1"

log = get_logger("synth")

QUADRANTS = CLASS_NAMES
# DEAP, participants s01-s22, 880 trials, rule ">= 5 is high".
DEAP_QUADRANT_COUNTS = {"HVHA": 302, "HVLA": 178, "LVHA": 217, "LVLA": 183}
DEAP_QUADRANT_PROPORTIONS = {k: v / 880 for k, v in DEAP_QUADRANT_COUNTS.items()}
# DEAP's videos missing by design: participant -> number of last trials without a video (of 40).
DEAP_MISSING_LAST_TRIALS = {3: 1, 5: 1, 11: 3, 14: 1}

# Named presets. Any key can be overridden with generate_synthetic_deap(**overrides).
SCALES: dict[str, dict[str, Any]] = {
    "tiny": dict(n_participants=3, n_trials=4, duration_s=6.0, fps=5.0, width=320, height=240),
    # the smoke profile's (notebooks in CI): tiny with 6 trials per person instead of 4, so that every
    # class has at least 3 videos and a 2-fold trial cross-validation can train every class in both folds
    "smoke": dict(n_participants=3, n_trials=6, duration_s=6.0, fps=5.0, width=320, height=240),
    "default": dict(n_participants=12, n_trials=16, duration_s=15.0, fps=10.0, width=320, height=240),
    # DEAP's shape (22 participants x 40 trials x 60 s); fps and resolution lower than DEAP's 50 fps DV.
    "deap": dict(n_participants=22, n_trials=40, duration_s=60.0, fps=10.0, width=320, height=240),
}
# Knobs shared by all scales (overridable too).
DEFAULT_KNOBS: dict[str, Any] = dict(
    jpeg_quality=(40, 90),  # MJPG quality range, drawn per trial
    occlusion_trial_prob=0.35,  # probability that a trial has look-away / hand / out-of-frame episodes
    weak_expressivity_prob=0.15,  # share of participants who barely show what they feel
    felt_noise_valence=0.45,  # sd of (felt - reported) valence, rating units
    felt_noise_arousal=0.45,
    cue_scale=0.8,  # rating units over which a cue saturates: cue = expressivity * tanh((felt - 5) / cue_scale)
    stimulus_agreement=0.45,  # weight of the music video's intended quadrant in the reported quadrant
    exact_five_prob=0.035,  # share of high-side ratings set to exactly 5.0
)

# SeedSequence stream ids
_S_RATINGS, _S_PARTICIPANT, _S_VIDEO = 0, 1, 2


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key)))


def quadrant_of(valence: float | np.ndarray, arousal: float | np.ndarray):
    """The paper's 4 classes (``msvssm.data.deap.quadrant``, vectorised): >= 5 is high."""
    hv = np.asarray(valence) >= DEFAULT_THRESHOLD
    ha = np.asarray(arousal) >= DEFAULT_THRESHOLD
    idx = np.where(hv, np.where(ha, 0, 1), np.where(ha, 2, 3))
    names = np.asarray(QUADRANTS)[idx]
    return names.item() if names.ndim == 0 else names


def resolve_params(scale: str = "default", **overrides: Any) -> dict[str, Any]:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {sorted(SCALES)}")
    params = {**SCALES[scale], **DEFAULT_KNOBS}
    unknown = set(overrides) - set(params)
    if unknown:
        raise TypeError(f"unknown parameters: {sorted(unknown)}")
    params.update({k: v for k, v in overrides.items() if v is not None})
    params["n_participants"] = int(params["n_participants"])
    params["n_trials"] = int(params["n_trials"])
    params["width"], params["height"] = int(params["width"]), int(params["height"])
    params["fps"], params["duration_s"] = float(params["fps"]), float(params["duration_s"])
    if isinstance(params["jpeg_quality"], (list, tuple)):
        params["jpeg_quality"] = [int(q) for q in params["jpeg_quality"]]
    if params["n_participants"] < 1 or params["n_trials"] < 1 or params["duration_s"] <= 0 or params["fps"] <= 0:
        raise ValueError("participants, trials, duration and fps must be positive")
    if params["height"] < 200 or params["width"] < 240:
        raise ValueError("frames smaller than 240x200 leave faces too small for dlib's detector (~80 px)")
    return params


def missing_trials(n_participants: int, n_trials: int) -> dict[int, list[int]]:
    """Trials without a video, at DEAP's participant slots, scaled to ``n_trials`` (at least one)."""
    out: dict[int, list[int]] = {}
    for p, k in DEAP_MISSING_LAST_TRIALS.items():
        if p <= n_participants and n_trials > 1:
            m = max(1, int(round(k * n_trials / 40)))
            m = min(m, n_trials - 1)
            out[p] = list(range(n_trials - m + 1, n_trials + 1))
    return out


def n_frames_of(params: dict[str, Any]) -> int:
    return int(round(params["duration_s"] * params["fps"]))


# ----------------------------------------------------------------------------- ratings


def _stimulus_quadrant(experiment_id: int, n_trials: int) -> int:
    """The quadrant a music video was chosen to elicit (ids in blocks, as DEAP's were selected per quadrant)."""
    return min(3, (experiment_id - 1) * 4 // n_trials)


def _participant_ratings(seed: int, p: int, n_trials: int, knobs: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, float]]:
    rng = _rng(seed, _S_RATINGS, p)
    target = np.array([DEAP_QUADRANT_PROPORTIONS[q] for q in QUADRANTS])
    exp_ids = rng.permutation(n_trials) + 1
    stim = np.array([_stimulus_quadrant(e, n_trials) for e in range(1, n_trials + 1)])
    freq = np.bincount(stim, minlength=4) / n_trials
    a = float(knobs["stimulus_agreement"])
    base = np.clip((target - a * freq) / (1 - a), 0.01, None)
    base /= base.sum()
    # participants differ widely in how their ratings fall in the quadrants
    pref = rng.dirichlet(base * 12.0)
    # a participant uses the scale in their own way: report = felt + bias
    bias_v, bias_a = rng.normal(0, 0.5), rng.normal(0, 0.5)
    rows = []
    start = int(rng.uniform(90, 200) * 1e6)
    for trial in range(1, n_trials + 1):
        e = int(exp_ids[trial - 1])
        probs = a * np.eye(4)[stim[e - 1]] + (1 - a) * pref
        q = int(rng.choice(4, p=probs / probs.sum()))
        hv, ha = q in (0, 1), q in (0, 2)
        vals = []
        for high in (hv, ha):
            d = 4.0 * rng.beta(1.4, 2.0)
            if high:
                v = 5.0 if rng.random() < knobs["exact_five_prob"] else min(9.0, 5.0 + max(d, 0.01))
            else:
                v = max(1.0, min(4.99, 5.0 - max(d, 0.01)))
            vals.append(round(v, 2))
        val, aro = vals
        dom = round(float(np.clip(5 + 0.35 * (val - 5) + 0.15 * (aro - 5) + rng.normal(0, 1.4), 1, 9)), 2)
        lik = round(float(np.clip(5 + 0.7 * (val - 5) + rng.normal(0, 1.2), 1, 9)), 2)
        fam: Any = int(np.clip(round(1 + 4 * rng.beta(1.3, 2.2)), 1, 5))
        if p % 13 == 2:  # some participants did not rate familiarity (blank, as in DEAP)
            fam = ""
        rows.append([p, trial, e, start, val, aro, dom, lik, fam])
        start += int((60 + rng.uniform(20, 40)) * 1e6)  # microseconds: 60 s clip + self-assessment
    df = pd.DataFrame(rows, columns=list(RATING_COLUMNS))
    return df, {"bias_v": float(bias_v), "bias_a": float(bias_a)}


def generate_ratings(n_participants: int = 22, n_trials: int = 40, seed: int = 0, **knobs: Any) -> pd.DataFrame:
    """``participant_ratings.csv`` as a DataFrame, without rendering any video.

    Participant ``p``'s ratings depend only on (seed, p, n_trials), so a
    larger draw extends a smaller one.
    """
    k = {**DEFAULT_KNOBS, **knobs}
    frames = [_participant_ratings(seed, p, n_trials, k)[0] for p in range(1, n_participants + 1)]
    return pd.concat(frames, ignore_index=True)


def ratings_to_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.2f", lineterminator="\n")


# ----------------------------------------------------------------------------- participants

_SKIN_DARK = np.array([45.0, 65.0, 95.0])  # BGR
_SKIN_LIGHT = np.array([185.0, 205.0, 235.0])
_HAIR = [(20, 20, 25), (25, 35, 60), (40, 60, 100), (70, 110, 160), (30, 50, 120), (140, 140, 145), (60, 60, 70)]
_IRIS = [(40, 60, 90), (90, 110, 60), (120, 90, 60), (30, 40, 50)]


@dataclass
class Participant:
    pid: int
    appearance: fr.Appearance
    expressivity: float  # scales every expression cue
    rest_v: float  # resting expression offset on the valence cue (resting smile/frown)
    rest_a: float  # resting offset on the arousal cue (sleepy/alert look)
    w_mouth: float  # how much valence shows in the mouth ...
    w_brow: float  # ... and in the brows
    blink_rate: float  # blinks per second at neutral arousal
    talkative: float  # probability that a trial has talking episodes
    head_motion: float
    seat_x: float  # preferred position (fraction of width) and size (fraction of height)
    seat_y: float
    size: float
    felt_bias_v: float = 0.0
    felt_bias_a: float = 0.0


def make_participant(seed: int, p: int, params: dict[str, Any]) -> Participant:
    rng = _rng(seed, _S_PARTICIPANT, p)
    t = rng.uniform(0, 1)
    skin = _SKIN_DARK + (_SKIN_LIGHT - _SKIN_DARK) * t + rng.normal(0, 6, 3)
    lips = np.clip(skin * np.array([0.75, 0.7, 1.05]) - 10, 0, 255)
    hair = np.array(_HAIR[int(rng.integers(len(_HAIR)))], float) + rng.normal(0, 8, 3)
    shirt = rng.uniform(20, 230, 3)
    glasses = int(rng.integers(1, 3)) if rng.random() < 0.3 else 0
    ap = fr.Appearance(
        skin=tuple(np.clip(skin, 0, 255)),
        hair=tuple(np.clip(hair, 0, 255)),
        lips=tuple(lips),
        iris=_IRIS[int(rng.integers(len(_IRIS)))],
        shirt=tuple(shirt),
        face_h=rng.uniform(1.18, 1.42),
        jaw=rng.uniform(0.68, 0.9),
        eye_sep=rng.uniform(0.37, 0.46),
        eye_w=rng.uniform(0.16, 0.21),
        eye_h=rng.uniform(0.085, 0.115),
        eye_y=rng.uniform(-0.22, -0.13),
        brow_gap=rng.uniform(0.14, 0.24),
        brow_thick=rng.uniform(0.05, 0.1),
        nose_len=rng.uniform(0.3, 0.45),
        nose_w=rng.uniform(0.1, 0.16),
        mouth_y=rng.uniform(0.47, 0.57),
        mouth_w=rng.uniform(0.26, 0.38),
        lip_thick=rng.uniform(0.035, 0.07),
        hair_style=int(rng.choice(4, p=[0.4, 0.25, 0.2, 0.15])),
        hairline=rng.uniform(0.52, 0.7),
        glasses=glasses,
        glasses_color=tuple(rng.uniform(10, 90, 3)),
    )
    weak = rng.random() < params["weak_expressivity_prob"]
    expressivity = rng.uniform(0.15, 0.4) if weak else rng.uniform(0.55, 1.25)
    _, bias = _participant_ratings(seed, p, params["n_trials"], params)
    return Participant(
        pid=p,
        appearance=ap,
        expressivity=float(expressivity),
        rest_v=float(rng.normal(0, 0.3)),
        rest_a=float(rng.normal(0, 0.25)),
        w_mouth=float(rng.uniform(0.45, 1.0)),
        w_brow=float(rng.uniform(0.3, 1.0)),
        blink_rate=float(rng.uniform(0.12, 0.45)),
        talkative=float(rng.uniform(0.0, 0.5)),
        head_motion=float(rng.uniform(0.3, 1.2)),
        seat_x=float(rng.uniform(0.42, 0.58)),
        seat_y=float(rng.uniform(0.44, 0.54)),
        size=float(rng.uniform(0.2, 0.25)),
        felt_bias_v=bias["bias_v"],
        felt_bias_a=bias["bias_a"],
    )


# ----------------------------------------------------------------------------- one trial


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, n_waves: int = 3, fmin: float = 0.05, fmax: float = 0.6) -> np.ndarray:
    """Zero-mean smooth signal with unit-ish amplitude (sum of random sinusoids)."""
    out = np.zeros_like(t)
    for _ in range(n_waves):
        f = rng.uniform(fmin, fmax)
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 1.0)
    return out / math.sqrt(n_waves / 2)


def _events(rng: np.random.Generator, rate: float, dur: tuple[float, float], duration_s: float) -> list[tuple[float, float]]:
    out, s = [], rng.exponential(1 / rate) if rate > 0 else duration_s + 1
    while s < duration_s:
        d = rng.uniform(*dur)
        out.append((s, s + d))
        s += d + rng.exponential(1 / rate)
    return out


@dataclass
class TrialPlan:
    participant: int
    trial: int
    felt_valence: float
    felt_arousal: float
    frames: pd.DataFrame  # per-frame pose, expression, occlusion, ground truth
    background: np.ndarray = field(repr=False)
    gain: np.ndarray = field(repr=False)
    noise_sd: float = 0.0
    blur: float = 0.0
    quality: int = 80
    light: float = 0.0
    hand_color: tuple = (150.0, 170.0, 210.0)


def _background(rng: np.random.Generator, w: int, h: int, skin: np.ndarray) -> np.ndarray:
    # a colour not too close to the skin in brightness
    for _ in range(20):
        col = rng.uniform(15, 240, 3)
        if abs(col.mean() - skin.mean()) > 35:
            break
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = int(rng.integers(4))
    img = np.empty((h, w, 3), np.float32)
    img[:] = col
    if kind == 1:  # vertical colour gradient
        col2 = np.clip(col + rng.normal(0, 40, 3), 0, 255)
        a = (yy / h)[..., None]
        img = img * (1 - a) + col2 * a
    elif kind == 2:  # stripes / panels (a wall with boards, curtains)
        period = rng.uniform(25, 80)
        ang = rng.uniform(0, np.pi)
        s = np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period)
        img += (rng.uniform(8, 25) * s)[..., None]
    elif kind == 3:  # blotchy texture
        small = rng.normal(0, 1, (h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
        cv2 = require("cv2", "faces", "the synthetic DEAP generator")

        tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        img += rng.uniform(8, 22) * tex
    return np.clip(img, 0, 255).astype(np.uint8)


# Knobs of one trial's plan (plan_trial), in rating or canonical units unless named otherwise.
# Ranges are (low, high) of a uniform draw; "waves" are (sinusoids, min Hz, max Hz) of _smooth_noise.
ONSET_DELAY_S = (0.0, 3.0)  # the felt expression starts this many seconds into the clip
ONSET_TAU_S = (0.5, 3.0)  # time constant of the onset 1 - exp(-(t - t0) / tau)
CUE_WOBBLE = (0.12, 0.15)  # amplitude of the slow cue fluctuation: base + per unit of expressivity
REACTION_RATE_HZ = 1 / 12  # brief smiles/grimaces unrelated to the label, per second
REACTION_DURATION_S = (0.8, 2.5)  # length of one such reaction
REACTION_AMPLITUDE = (0.2, 0.5)  # its peak on the valence cue (random sign)
SMILE_GAIN = 0.9  # smile = SMILE_GAIN * w_mouth * valence cue
CHEEK_GAIN, CHEEK_FROM_SMILE = 1.6, 0.3  # cheek raise = CHEEK_GAIN * (smile - CHEEK_FROM_SMILE), in 0..1
BROW_INNER_AROUSAL = (-2.5, 0.3, 1.2)  # inner brow = w_brow * neg. valence * tanh(a * ac + b) * c (sad up, angry down)
BROW_RAISE_GAIN = 0.7  # brow height = BROW_RAISE_GAIN * w_brow * arousal cue + jitter
BROW_JITTER, BROW_JITTER_WAVES = 0.1, (2, 0.1, 0.8)  # amplitude and waves of the brow-height jitter
EYE_OPEN_GAIN, EYE_OPEN_RANGE = 0.4, (0.45, 1.5)  # eye openness = 1 + EYE_OPEN_GAIN * arousal cue, clipped
MOUTH_OPEN_GAIN = 0.6  # mouth opening = gain * positive arousal * (base + positive valence) + jitter
MOUTH_OPEN_VALENCE_BASE = 0.4  # mouth opening with positive arousal but neutral valence (relative)
MOUTH_JITTER = 0.05  # amplitude of the mouth-opening jitter
TALK_RATE_HZ, TALK_DURATION_S = 1 / 6, (1.0, 3.0)  # talking episodes per second and their length
TALK_SYLLABLE_HZ, TALK_MOUTH = (2.5, 4.0), 0.45  # syllable rate and how far talking opens the mouth
BLINK_AROUSAL_GAIN, BLINK_MIN_RATE_HZ = 0.6, 0.05  # blink rate = rate * (1 + gain * mean arousal cue), at least min
BLINK_DURATION_S, EYE_CLOSED = (0.12, 0.3), 0.05  # blink length and eye openness during it
HEAD_AROUSAL_GAIN, HEAD_AROUSAL_CAP = 0.6, 0.5  # head motion * (1 + gain * arousal cue clipped to 0..cap): strong roll defeats dlib
FACE_SIZE_TRIAL = (0.92, 1.08)  # face size factor per trial
FACE_SIZE_WOBBLE, FACE_SIZE_WAVES = 0.02, (2, 0.05, 0.3)  # slow change of face size (leaning in/out)
SEAT_JITTER = (0.06, 0.04)  # trial offset of the seat position, fraction of width, height
HEAD_SWAY, HEAD_WAVES = (0.03, 0.02), (3, 0.05, 0.7)  # head motion x, y (fraction of width, height), and its waves
ROLL_TRIAL_DEG, ROLL_MOTION_DEG = 5.0, 2.5  # roll offset per trial (+-) and motion amplitude, degrees
YAW_MOTION, PITCH_MOTION, TURN_WAVES = 0.35, 0.3, (2, 0.05, 0.5)  # fake yaw/pitch amplitudes (-1..1) and their waves
BOX_MARGIN_PX = 2  # the ground-truth box stays this far inside the frame while the face is shown
OCCLUSION_EPISODES = (1, 3)  # episodes per occluded trial: integers in [low, high)
OCCLUSION_DURATION_S = (0.8, 3.0)  # length of one episode
OCCLUSION_EARLIEST_S = 1.0  # episodes start after this (or a third of the clip, if shorter)
OCCLUSION_KINDS = {"hand": 0.4, "away": 0.35, "out": 0.25}  # kind of episode: probability
HAND_X = 0.3  # the hand's centre lies within +-HAND_X face half-widths of the face centre
OUT_OF_FRAME = 2.5  # an "out" face is moved this many half-widths past the frame edge
LIGHT_GAIN = (0.65, 1.25)  # overall brightness factor per trial
LIGHT_GRADIENT = (0.35, 0.2)  # +- horizontal and vertical brightness gradient (a lamp on one side)
GAIN_CLIP = (0.3, 1.8)  # bounds of the per-pixel lighting gain
SHADING_PER_GRADIENT = 2.5  # face shading side = clip(horizontal gradient * this, -1, 1)
HAND_TONE, HAND_TONE_SD = (0.9, 1.1), 5.0  # hand colour = skin * factor + N(0, sd) per channel
CAMERA_NOISE_SD = (1.0, 6.0)  # sd of the pixel noise
BLUR_SIGMA = (0.0, 1.1)  # Gaussian blur sigma (below 0.3: none)


def _felt_state(rng: np.random.Generator, P: Participant, reported_v: float, reported_a: float, params: dict[str, Any]) -> tuple[float, float]:
    """The felt state: the self-report minus the participant's scale bias, plus noise."""
    felt_v = float(np.clip(reported_v - P.felt_bias_v + rng.normal(0, params["felt_noise_valence"]), 1, 9))
    felt_a = float(np.clip(reported_a - P.felt_bias_a + rng.normal(0, params["felt_noise_arousal"]), 1, 9))
    return felt_v, felt_a


def _cue_signals(rng, P: Participant, felt_v: float, felt_a: float, t: np.ndarray, dur: float, cue_scale: float):
    """Valence and arousal cues over time: rest + expressivity * tanh(felt) * onset + wobble (+ reactions)."""
    vt = P.expressivity * math.tanh((felt_v - 5.0) / cue_scale)
    at = P.expressivity * math.tanh((felt_a - 5.0) / cue_scale)
    t0, tau = rng.uniform(*ONSET_DELAY_S), rng.uniform(*ONSET_TAU_S)
    env = 1.0 - np.exp(-np.clip(t - t0, 0, None) / tau)
    fl = CUE_WOBBLE[0] + CUE_WOBBLE[1] * P.expressivity
    vc = P.rest_v + vt * env + fl * _smooth_noise(rng, t)
    ac = P.rest_a + at * env + fl * _smooth_noise(rng, t)
    # transient reactions unrelated to the label (a brief smile, a grimace)
    for s, e in _events(rng, REACTION_RATE_HZ, REACTION_DURATION_S, dur):
        m = (t >= s) & (t < e)
        vc[m] += rng.choice([-1, 1]) * rng.uniform(*REACTION_AMPLITUDE) * np.sin(np.pi * (t[m] - s) / (e - s))
    return vc, ac


def _expression(rng, P: Participant, vc: np.ndarray, ac: np.ndarray, t: np.ndarray, dur: float) -> dict[str, np.ndarray]:
    """Face parameters per frame (``fr.Expression`` fields plus ``talking``) from the cues."""
    smile = np.clip(SMILE_GAIN * P.w_mouth * vc, -1, 1)
    cheek = np.clip(CHEEK_GAIN * (smile - CHEEK_FROM_SMILE), 0, 1)
    neg = np.clip(-vc, 0, None)
    a, b, c = BROW_INNER_AROUSAL
    brow_inner = np.clip(P.w_brow * neg * np.tanh(a * ac + b) * c, -1, 1)  # sad: inner up; angry: inner down
    brow_raise = np.clip(BROW_RAISE_GAIN * P.w_brow * ac + BROW_JITTER * _smooth_noise(rng, t, *BROW_JITTER_WAVES), -1, 1)
    eye_open = np.clip(1.0 + EYE_OPEN_GAIN * ac, *EYE_OPEN_RANGE)
    mouth_open = np.clip(
        MOUTH_OPEN_GAIN * np.clip(ac, 0, None) * (MOUTH_OPEN_VALENCE_BASE + np.clip(vc, 0, None))
        + MOUTH_JITTER * _smooth_noise(rng, t),
        0,
        1,
    )
    # talking: mouth opens and closes at syllable rate, whatever the feeling
    talking = np.zeros(len(t), bool)
    if rng.random() < P.talkative:
        for s, e in _events(rng, TALK_RATE_HZ, TALK_DURATION_S, dur):
            m = (t >= s) & (t < e)
            talking |= m
            syllables = np.abs(np.sin(2 * np.pi * rng.uniform(*TALK_SYLLABLE_HZ) * t[m]))
            mouth_open[m] = np.clip(mouth_open[m] + TALK_MOUTH * syllables, 0, 1)
    # blinks: rate grows with arousal
    rate = max(BLINK_MIN_RATE_HZ, P.blink_rate * (1 + BLINK_AROUSAL_GAIN * float(np.mean(ac))))
    for s, e in _events(rng, rate, BLINK_DURATION_S, dur):
        eye_open[(t >= s) & (t < e)] = EYE_CLOSED
    return dict(smile=smile, cheek=cheek, mouth_open=mouth_open, eye_open=eye_open, brow_raise=brow_raise,
                brow_inner=brow_inner, talking=talking)


def _head_pose(rng, P: Participant, ac: np.ndarray, t: np.ndarray, W: int, Hh: int) -> dict[str, np.ndarray]:
    """Face centre, half-width, roll and fake yaw/pitch per frame: seat, trial offset, motion growing with arousal."""
    amp = P.head_motion * (1 + HEAD_AROUSAL_GAIN * np.clip(ac, 0, HEAD_AROUSAL_CAP))
    w = P.size * Hh * rng.uniform(*FACE_SIZE_TRIAL) * (1 + FACE_SIZE_WOBBLE * _smooth_noise(rng, t, *FACE_SIZE_WAVES))
    jx, jy = SEAT_JITTER
    cx = (P.seat_x + rng.uniform(-jx, jx)) * W + HEAD_SWAY[0] * W * amp * _smooth_noise(rng, t, *HEAD_WAVES)
    cy = (P.seat_y + rng.uniform(-jy, jy)) * Hh + HEAD_SWAY[1] * Hh * amp * _smooth_noise(rng, t, *HEAD_WAVES)
    roll = rng.uniform(-ROLL_TRIAL_DEG, ROLL_TRIAL_DEG) + ROLL_MOTION_DEG * amp * _smooth_noise(rng, t, *HEAD_WAVES)
    yaw = np.clip(YAW_MOTION * amp * _smooth_noise(rng, t, *TURN_WAVES), -1, 1)
    pitch = np.clip(PITCH_MOTION * amp * _smooth_noise(rng, t, *TURN_WAVES), -1, 1)
    x0, y0, x1, y1 = fr.GT_BOX_CANONICAL
    # keep the ground-truth box inside the frame while the face is shown
    cx = np.clip(cx, -x0 * w + BOX_MARGIN_PX, W - x1 * w - BOX_MARGIN_PX)
    cy = np.clip(cy, -y0 * w + BOX_MARGIN_PX, Hh - y1 * w - BOX_MARGIN_PX)
    return dict(cx=cx, cy=cy, w=w, roll=roll, yaw=yaw, pitch=pitch)


def _occlusions(rng, t: np.ndarray, dur: float, prob: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Episodes without a detectable face: per frame the kind (``none`` when visible), the hand's x; exit side."""
    occ = np.array(["none"] * len(t), dtype=object)
    hand_x = np.zeros(len(t))
    if rng.random() < prob:
        earliest = min(OCCLUSION_EARLIEST_S, dur / 3)
        for _ in range(int(rng.integers(*OCCLUSION_EPISODES))):
            d = rng.uniform(*OCCLUSION_DURATION_S)
            s = rng.uniform(earliest, max(earliest, dur - d))
            kind = str(rng.choice(list(OCCLUSION_KINDS), p=list(OCCLUSION_KINDS.values())))
            m = (t >= s) & (t < s + d)
            occ[m] = kind
            hand_x[m] = rng.uniform(-HAND_X, HAND_X)
    side = 1 if rng.random() < 0.5 else -1  # the edge a face "out" of frame leaves by (drawn in every trial)
    return occ, hand_x, side


def _ground_truth(pid: int, trial: int, t: np.ndarray, occ: np.ndarray, hand_x: np.ndarray, pose: dict, cues: dict, face: dict) -> pd.DataFrame:
    """The per-frame table of ``ground_truth.csv`` (box empty while the face is not visible)."""
    visible = occ == "none"
    boxes = np.array([fr.gt_box(fr.Pose(pose["cx"][i], pose["cy"][i], pose["w"][i], pose["roll"][i])) for i in range(len(t))])
    frames = pd.DataFrame(
        {
            "participant": pid,
            "trial": trial,
            "frame": np.arange(len(t)),
            "time_s": np.round(t, 4),
            "visible": visible.astype(int),
            "occlusion": occ,
            "x0": boxes[:, 0],
            "y0": boxes[:, 1],
            "x1": boxes[:, 2],
            "y1": boxes[:, 3],
            **pose,
            "hand_x": hand_x,
            **cues,
            **{k: v for k, v in face.items() if k != "talking"},
            "talking": face["talking"].astype(int),
        }
    )
    for c in ("x0", "y0", "x1", "y1"):
        frames.loc[~visible, c] = np.nan
    return frames


def _lighting_gain(rng, W: int, Hh: int) -> tuple[np.ndarray, float]:
    """Per-pixel gain (H x W x 3, float32): overall gain and a linear gradient; returns it and the x gradient."""
    g0 = rng.uniform(*LIGHT_GAIN)
    gx, gy = rng.uniform(-LIGHT_GRADIENT[0], LIGHT_GRADIENT[0]), rng.uniform(-LIGHT_GRADIENT[1], LIGHT_GRADIENT[1])
    yy, xx = np.mgrid[0:Hh, 0:W].astype(np.float32)
    gain = g0 * (1 + gx * (xx / W - 0.5) * 2 + gy * (yy / Hh - 0.5) * 2)
    return np.repeat(np.clip(gain, *GAIN_CLIP).astype(np.float32)[..., None], 3, axis=2), gx


def plan_trial(seed: int, participant: Participant, trial: int, reported_v: float, reported_a: float, params: dict[str, Any]) -> TrialPlan:
    """Everything about one video except the pixels: deterministic from (seed, participant, trial).

    Steps, in the order they draw from the trial's random stream: felt state, cue
    signals, expression, head pose, occlusion episodes, background, lighting and
    camera (the order is part of the output: changing it changes every video).
    """
    rng = _rng(seed, _S_VIDEO, participant.pid, trial)
    P = participant
    W, Hh = params["width"], params["height"]
    t = np.arange(n_frames_of(params)) / params["fps"]
    dur = params["duration_s"]

    felt_v, felt_a = _felt_state(rng, P, reported_v, reported_a, params)
    vc, ac = _cue_signals(rng, P, felt_v, felt_a, t, dur, params["cue_scale"])
    face = _expression(rng, P, vc, ac, t, dur)
    pose = _head_pose(rng, P, ac, t, W, Hh)
    occ, hand_x, side = _occlusions(rng, t, dur, params["occlusion_trial_prob"])
    w = pose["w"]
    pose["cx"] = np.where(occ == "out", np.where(side > 0, W + OUT_OF_FRAME * w, -OUT_OF_FRAME * w), pose["cx"])
    frames = _ground_truth(P.pid, trial, t, occ, hand_x, pose, {"valence_cue": vc, "arousal_cue": ac}, face)

    skin = np.array(P.appearance.skin)
    bg = _background(rng, W, Hh, skin)
    gain, gx = _lighting_gain(rng, W, Hh)
    q = params["jpeg_quality"]
    qlo, qhi = (q, q) if isinstance(q, int) else (q[0], q[1])
    hand = np.clip(skin * rng.uniform(*HAND_TONE) + rng.normal(0, HAND_TONE_SD, 3), 0, 255)
    return TrialPlan(
        participant=P.pid,
        trial=trial,
        felt_valence=felt_v,
        felt_arousal=felt_a,
        frames=frames,
        background=bg,
        gain=gain,
        noise_sd=float(rng.uniform(*CAMERA_NOISE_SD)),
        blur=float(rng.uniform(*BLUR_SIGMA)),
        quality=int(rng.integers(qlo, qhi + 1)),
        light=float(np.clip(gx * SHADING_PER_GRADIENT, -1, 1)),
        hand_color=tuple(hand),
    )


def render_frames(plan: TrialPlan, participant: Participant, seed: int):
    """Yield the BGR uint8 frames of a planned trial."""
    cv2 = require("cv2", "faces", "the synthetic DEAP generator")

    rng = _rng(seed, _S_VIDEO, participant.pid, plan.trial, 1)  # pixel noise stream
    h, w = plan.background.shape[:2]
    bank = [rng.normal(0, plan.noise_sd, (h + 8, w + 8, 3)).astype(np.float32) for _ in range(3)]
    F = plan.frames
    cols = {c: F[c].to_numpy() for c in F.columns}
    for i in range(len(F)):
        img = plan.background.copy()
        pose = fr.Pose(cols["cx"][i], cols["cy"][i], cols["w"][i], cols["roll"][i], cols["yaw"][i], cols["pitch"][i])
        ex = fr.Expression(
            smile=cols["smile"][i],
            mouth_open=cols["mouth_open"][i],
            eye_open=cols["eye_open"][i],
            brow_raise=cols["brow_raise"][i],
            brow_inner=cols["brow_inner"][i],
            cheek=cols["cheek"][i],
        )
        occ = fr.Occlusion(kind=cols["occlusion"][i], hand_x=cols["hand_x"][i], hand_y=0.25, hand_color=plan.hand_color)
        fr.draw_person(img, participant.appearance, pose, ex, occ, light=plan.light)
        if plan.blur > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), plan.blur)
        k = int(rng.integers(len(bank)))
        ox, oy = int(rng.integers(9)), int(rng.integers(9))
        f = cv2.multiply(img, plan.gain, dtype=cv2.CV_32F)
        cv2.add(f, bank[k][oy : oy + h, ox : ox + w], dst=f)
        np.clip(f, 0, 255, out=f)
        yield f.astype(np.uint8)


def video_path(out_dir: Path, p: int, trial: int) -> Path:
    return Path(out_dir) / "face_video" / f"s{p:02d}" / f"s{p:02d}_trial{trial:02d}.avi"


def write_video(path: Path, frames, fps: float, size: tuple[int, int], quality: int) -> int:
    """Write frames to an MJPG AVI atomically; returns the frame count."""
    cv2 = require("cv2", "faces", "the synthetic DEAP generator")

    n = 0
    with atomic_path(path) as tmp:
        vw = cv2.VideoWriter(str(tmp), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
        if not vw.isOpened():
            raise RuntimeError(f"OpenCV cannot write MJPG to {tmp}")
        vw.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
        try:
            for f in frames:
                vw.write(f)
                n += 1
        finally:
            vw.release()
    return n


def _video_task(task: tuple) -> tuple[int, int, bool, pd.DataFrame]:
    """Plan (and unless it exists, render) one video. Returns (p, trial, written, ground truth)."""
    cv2 = require("cv2", "faces", "the synthetic DEAP generator")

    cv2.setNumThreads(1)
    out_dir, seed, params, p, trial, rv, ra, render = task
    P = make_participant(seed, p, params)
    plan = plan_trial(seed, P, trial, rv, ra, params)
    gt = plan.frames
    gt.insert(2, "felt_valence", round(plan.felt_valence, 3))
    gt.insert(3, "felt_arousal", round(plan.felt_arousal, 3))
    gt.insert(2, "has_video", int(render is not None))
    written = False
    if render:
        path = video_path(Path(out_dir), p, trial)
        if not path.exists():
            write_video(path, render_frames(plan, P, seed), params["fps"], (params["width"], params["height"]), plan.quality)
            written = True
    return p, trial, written, gt


# ----------------------------------------------------------------------------- orchestration


@dataclass
class SynthSummary:
    out_dir: str
    seed: int
    scale: str
    videos_written: int
    videos_skipped_existing: int
    videos_missing_by_design: int
    videos_total: int
    frames_total: int
    frames_written: int
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"synthetic DEAP ({self.scale}, seed {self.seed}) in {self.out_dir}: "
            f"{self.videos_written} videos written, {self.videos_skipped_existing} already complete (skipped), "
            f"{self.videos_missing_by_design} missing by design; {self.videos_total} videos, "
            f"{self.frames_total} frames ({self.frames_written} rendered now) in {self.seconds:.1f} s"
        )


def _meta(seed: int, scale: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "generator": "msvssm.data.synth",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "scale": scale,
        "params": params,
        "video_codec": "MJPG (OpenCV built-in AVI writer)",
        "missing_videos": {f"s{p:02d}": v for p, v in missing_trials(params["n_participants"], params["n_trials"]).items()},
        "note": "ground_truth.csv and this file are not part of DEAP's layout; models must not read them.",
    }


def generate_synthetic_deap(
    out_dir: str | os.PathLike,
    seed: int = 0,
    scale: str = "default",
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    **overrides: Any,
) -> SynthSummary:
    """Write a synthetic DEAP (face videos + ratings) under ``out_dir``; resumes an interrupted run.

    ``overrides`` replace entries of ``SCALES[scale]`` / ``DEFAULT_KNOBS``
    (e.g. ``n_participants=2, duration_s=4``). Existing complete videos are
    kept (writes are atomic, so an existing file is complete); if ``out_dir``
    holds data from another seed/parameters, ``ValueError`` unless ``overwrite``.
    """
    t_start = time.perf_counter()
    out = Path(out_dir)
    params = resolve_params(scale, **overrides)
    meta = _meta(seed, scale, params)
    meta_path = out / "synth_meta.json"
    meta_text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    if meta_path.exists() and meta_path.read_text(encoding="utf-8") != meta_text:
        if not overwrite:
            raise ValueError(f"{out} holds a synthetic DEAP with other settings (see {meta_path}); use another folder or overwrite=True")
        for old in sorted((out / "face_video").glob("s*/s*_trial*.avi")):
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    leftovers = remove_atomic_leftovers([out, out / "metadata_csv", *sorted((out / "face_video").glob("s*"))])
    if leftovers:
        log.info("removed %d temporary file(s) left by an interrupted run", leftovers)
    atomic_write_text(meta_path, meta_text)

    ratings = generate_ratings(params["n_participants"], params["n_trials"], seed, **{k: params[k] for k in DEFAULT_KNOBS})
    atomic_write_text(out / "metadata_csv" / "participant_ratings.csv", ratings_to_csv(ratings))

    missing = missing_trials(params["n_participants"], params["n_trials"])
    tasks, n_missing = [], 0
    for row in ratings.itertuples(index=False):
        p, trial = int(row.Participant_id), int(row.Trial)
        has_video = trial not in missing.get(p, [])
        n_missing += not has_video
        tasks.append((str(out), int(seed), params, p, trial, float(row.Valence), float(row.Arousal), True if has_video else None))

    def video_exists(task: tuple) -> bool:
        return video_path(out, task[3], task[4]).exists()

    # Render the videos not written yet in a pool; plan the others here (their ground truth only).
    results = run_jobs(_video_task, [tk for tk in tasks if tk[-1]], workers=workers, is_done=video_exists,
                       progress=progress, desc="synth-deap", unit="video")
    rendered = {(r[0], r[1]) for r in results}
    results += [_video_task(tk) for tk in tasks if (tk[3], tk[4]) not in rendered]
    results.sort(key=lambda r: (r[0], r[1]))
    gt = pd.concat([r[3] for r in results], ignore_index=True)
    with atomic_path(out / "ground_truth.csv") as tmp:
        gt.to_csv(tmp, index=False, float_format="%.3f", lineterminator="\n")
    n_frames = n_frames_of(params)
    n_videos = len(tasks) - n_missing
    written = sum(1 for r in results if r[2])
    summary = SynthSummary(
        out_dir=str(out),
        seed=int(seed),
        scale=scale,
        videos_written=written,
        videos_skipped_existing=n_videos - written,
        videos_missing_by_design=n_missing,
        videos_total=n_videos,
        frames_total=n_videos * n_frames,
        frames_written=written * n_frames,
        seconds=time.perf_counter() - t_start,
        params=params,
    )
    log.info("%s", summary)
    return summary


# ----------------------------------------------------------------------------- CLI


def add_cli(parser: argparse.ArgumentParser) -> None:
    parser.description = "Write a synthetic DEAP (face videos + participant_ratings.csv) in DEAP's layout."
    parser.add_argument("--out", required=True, help="output folder (created; an interrupted run resumes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", choices=sorted(SCALES), default="default")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--participants", type=int, default=None, help="override the scale's participant count")
    parser.add_argument("--trials", type=int, default=None, help="override trials per participant")
    parser.add_argument("--duration", type=float, default=None, help="override video length in seconds")
    parser.add_argument("--fps", type=float, default=None, help="override frames per second")
    parser.add_argument("--overwrite", action="store_true", help="replace data of another seed/scale in --out")
    parser.add_argument("--no-progress", action="store_true")

    def run(args: argparse.Namespace) -> int:
        try:
            s = generate_synthetic_deap(
                args.out,
                seed=args.seed,
                scale=args.scale,
                workers=args.workers,
                progress=not args.no_progress,
                overwrite=args.overwrite,
                n_participants=args.participants,
                n_trials=args.trials,
                duration_s=args.duration,
                fps=args.fps,
            )
        except ValueError as e:
            log.error("%s", e)
            return 2
        print(s)
        return 0

    parser.set_defaults(func=run)
