"""Drawing of the synthetic faces used by :mod:`msvssm.data.synth`.

A face is drawn with OpenCV polygons in a *canonical* frame: the origin is the
face centre, x points right, y points down and one unit is the half-width of
the face. A :class:`Pose` (centre in pixels, half-width in pixels, in-plane
roll, small fake yaw/pitch) maps canonical points to the image. The face shows
an :class:`Expression` (mouth curvature, mouth opening, eye openness, brow
raise and brow inner-end tilt) on top of a participant's :class:`Appearance`
(geometry, skin, hair, eyewear).

Everything here is deterministic: no random numbers are drawn in this module;
the caller passes every parameter.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..optional import require

# Box convention of the ground truth, in canonical units (face half-widths),
# relative to the face centre before roll. Calibrated against the boxes that
# dlib's frontal face detector returns on these renders (see docs).
GT_BOX_CANONICAL = (-1.0, -0.8, 1.0, 1.2)  # x0, y0, x1, y1 (all in face half-widths)

_SHIFT = 4  # sub-pixel precision bits for cv2 drawing
_SCALE = float(1 << _SHIFT)


@dataclass
class Appearance:
    """What one participant looks like (fixed over all of their trials)."""

    skin: tuple[float, float, float]  # BGR
    hair: tuple[float, float, float]
    lips: tuple[float, float, float]
    iris: tuple[float, float, float]
    shirt: tuple[float, float, float]
    face_h: float = 1.3  # half-height / half-width
    jaw: float = 0.8  # width of the jaw relative to the cheeks
    eye_sep: float = 0.42
    eye_w: float = 0.19
    eye_h: float = 0.10
    eye_y: float = -0.18  # in units of face_h
    brow_gap: float = 0.20
    brow_thick: float = 0.075
    nose_len: float = 0.38
    nose_w: float = 0.13
    mouth_y: float = 0.52  # in units of face_h
    mouth_w: float = 0.32
    lip_thick: float = 0.05
    hair_style: int = 0  # 0 short, 1 long, 2 fringe, 3 bald/very short
    hairline: float = 0.62  # in units of face_h (distance of hairline above centre)
    glasses: int = 0  # 0 none, 1 round, 2 rectangular
    glasses_color: tuple[float, float, float] = (30.0, 30.0, 30.0)


@dataclass
class Pose:
    cx: float
    cy: float
    w: float  # face half-width in pixels
    roll: float = 0.0  # degrees, in the image plane
    yaw: float = 0.0  # -1..1, fake turn (features shift sideways)
    pitch: float = 0.0  # -1..1, fake nod (features shift vertically)


@dataclass
class Expression:
    smile: float = 0.0  # -1 frown .. +1 smile (mouth corner curvature)
    mouth_open: float = 0.0  # 0 closed .. 1 wide open
    eye_open: float = 1.0  # 0 closed .. ~1.4 wide
    brow_raise: float = 0.0  # -1 lowered .. +1 raised
    brow_inner: float = 0.0  # -1 inner ends down (anger) .. +1 inner ends up (sadness)
    cheek: float = 0.0  # 0..1 cheek raise (Duchenne squint), drawn as eye squint + cheek shade


@dataclass
class Occlusion:
    kind: str = "none"  # none | hand | away | out
    hand_x: float = 0.0  # canonical position of the hand centre
    hand_y: float = 0.3
    hand_color: tuple[float, float, float] = field(default=(150.0, 170.0, 210.0))


def _to_px(pts: np.ndarray, pose: Pose) -> np.ndarray:
    """Canonical (N, 2) -> fixed-point int32 pixel coordinates (N, 2)."""
    a = np.deg2rad(pose.roll)
    c, s = np.cos(a), np.sin(a)
    x = pts[:, 0] * pose.w
    y = pts[:, 1] * pose.w
    px = pose.cx + c * x - s * y
    py = pose.cy + s * x + c * y
    return np.round(np.stack([px, py], axis=1) * _SCALE).astype(np.int32)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40, a0: float = 0.0, a1: float = 2 * np.pi) -> np.ndarray:
    t = np.linspace(a0, a1, n, endpoint=False if a1 - a0 >= 2 * np.pi - 1e-9 else True)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _fill(img: np.ndarray, pts: np.ndarray, pose: Pose, color) -> None:
    cv2 = require("cv2", "faces", "drawing the synthetic faces")
    cv2.fillPoly(img, [_to_px(pts, pose)], color, lineType=cv2.LINE_AA, shift=_SHIFT)


def _line(img: np.ndarray, pts: np.ndarray, pose: Pose, color, thick_canon: float, closed: bool = False) -> None:
    cv2 = require("cv2", "faces", "drawing the synthetic faces")
    t = max(1, int(round(thick_canon * pose.w)))
    cv2.polylines(img, [_to_px(pts, pose)], closed, color, t, lineType=cv2.LINE_AA, shift=_SHIFT)


def _scale_color(c, f: float) -> tuple[float, float, float]:
    return tuple(float(min(255.0, max(0.0, v * f))) for v in c)  # type: ignore[return-value]


def face_outline(ap: Appearance, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    s = np.sin(t)
    narrow = 1.0 - (1.0 - ap.jaw) * np.clip(s, 0, None) ** 2
    return np.stack([np.cos(t) * narrow, ap.face_h * s], axis=1)


def gt_box(pose: Pose) -> tuple[float, float, float, float]:
    """Ground-truth face box (x0, y0, x1, y1) in pixels, axis-aligned, dlib-like."""
    x0, y0, x1, y1 = GT_BOX_CANONICAL
    a = np.deg2rad(pose.roll)
    mx, my = (x0 + x1) / 2 * pose.w, (y0 + y1) / 2 * pose.w
    cx = pose.cx + np.cos(a) * mx - np.sin(a) * my
    cy = pose.cy + np.sin(a) * mx + np.cos(a) * my
    hw, hh = (x1 - x0) / 2 * pose.w, (y1 - y0) / 2 * pose.w
    return (cx - hw, cy - hh, cx + hw, cy + hh)


# Shading of the skin, as factors of the participant's skin colour.
SKIN_RIM, SKIN_HIGHLIGHT = 0.72, 1.12  # dark rim of the head (also neck, ears) and the lit forehead
SKIN_SOCKET, SKIN_NOSE, SKIN_NOSTRIL = 0.86, 0.86, 0.45  # eye-socket shadow, nose tip, nostrils
SKIN_BRIDGE, SKIN_LIP_LINE = 0.7, 0.3  # nose-bridge shadow and the line between the lips
BROW_FROM_HAIR, BROW_FROM_SKIN = 0.55, 0.4  # brow colour: the darker of hair * a and skin * b (per channel)
LIGHT_SHIFT = (0.08, 0.25)  # how far ``light`` moves the lit face region and the forehead highlight sideways
# Fake head turn: features shift by these fractions of yaw and pitch (canonical units).
YAW_SHIFT, PITCH_SHIFT = 0.12, 0.10
# Expression -> geometry (canonical units: face half-widths).
SQUINT_PER_CHEEK = 0.35  # eye openness lost at full cheek raise (Duchenne squint)
EYE_CLOSED_BELOW = 0.15  # eye openness drawn as a closed lid line
BROW_RAISE_SHIFT = 0.09  # brow height change at brow_raise = +-1
BROW_INNER_TILT = (0.1, 0.03)  # inner-end and middle shift of the brow at brow_inner = +-1
CHEEK_SHOWN_ABOVE, CHEEK_DARKEN = 0.05, 0.12  # cheek raise drawn above this, its shade darkens the skin by up to this
SMILE_WIDEN, SMILE_CURVE = 0.18, 0.14  # mouth widening and corner lift at smile = 1
MOUTH_OPENING = 0.24  # lip gap at mouth_open = 1
TEETH_ABOVE = (0.06, 0.2)  # teeth shown when the opening and the smile exceed these
EYE_WHITE, PUPIL, LID = (235, 240, 242), (15, 15, 15), (25, 25, 30)  # BGR
MOUTH_INSIDE, TEETH = (40, 30, 60), (225, 230, 235)  # BGR
HAND_LINE = 0.75  # finger outline colour as a factor of the hand colour


def _draw_body(img: np.ndarray, ap: Appearance, pose: Pose) -> None:
    """Long hair behind the shoulders, shirt and neck."""
    H = ap.face_h
    shoulders = np.array([[-2.6, 3.6], [-2.2, 1.9 * H], [-0.9, 1.55 * H], [0.9, 1.55 * H], [2.2, 1.9 * H], [2.6, 3.6]])
    neck = np.array([[-0.45, 0.5 * H], [0.45, 0.5 * H], [0.5, 1.7 * H], [-0.5, 1.7 * H]])
    if ap.hair_style == 1:  # long hair falls behind the shoulders
        _fill(img, _ellipse(0.0, 0.25 * H, 1.3, 1.45 * H), pose, ap.hair)
    _fill(img, shoulders, pose, ap.shirt)
    _fill(img, neck, pose, _scale_color(ap.skin, SKIN_RIM))


def _draw_back_of_head(img: np.ndarray, ap: Appearance, pose: Pose) -> None:
    """Head turned away: one ear and the hair of the back of the head."""
    _fill(img, _ellipse(0.55, 0.0, 0.16, 0.28), pose, _scale_color(ap.skin, SKIN_RIM))
    _fill(img, face_outline(ap) * [1.02, 1.02], pose, ap.hair)


def _draw_head(img: np.ndarray, ap: Appearance, pose: Pose, light: float) -> None:
    """Ears, then the face with shading: dark rim, lit inner region and forehead highlight toward the light."""
    H = ap.face_h
    skin_dark = _scale_color(ap.skin, SKIN_RIM)
    for sx in (-1.0, 1.0):
        _fill(img, _ellipse(sx * 0.98, -0.02 * H, 0.15, 0.26), pose, skin_dark)
    outline = face_outline(ap)
    _fill(img, outline, pose, skin_dark)
    _fill(img, outline * [0.86, 0.9] + [LIGHT_SHIFT[0] * light, -0.04], pose, ap.skin)
    _fill(img, _ellipse(LIGHT_SHIFT[1] * light, -0.35 * H, 0.45, 0.3 * H), pose, _scale_color(ap.skin, SKIN_HIGHLIGHT))


def _draw_hair(img: np.ndarray, ap: Appearance, pose: Pose) -> None:
    """Hair on top of the head: a cap down to the hairline (or a fringe), or a thin line when bald."""
    H, hl = ap.face_h, ap.hairline
    if ap.hair_style != 3:
        t = np.linspace(np.pi, 2 * np.pi, 24)
        cap = np.stack([1.08 * np.cos(t), -0.05 * H + 1.12 * H * np.sin(t)], axis=1)
        if ap.hair_style == 2:  # fringe: straight edge low on the forehead
            lower = np.array([[1.02, -0.2 * H], [0.6, -hl * H + 0.12], [-0.6, -hl * H + 0.12], [-1.02, -0.2 * H]])
        else:
            lower = np.array([[1.04, -0.15 * H], [0.75, -hl * H], [0.3, -hl * H - 0.08], [-0.3, -hl * H - 0.06], [-0.8, -hl * H + 0.02], [-1.04, -0.15 * H]])
        _fill(img, np.concatenate([cap, lower]), pose, ap.hair)
    else:
        t = np.linspace(np.pi * 1.1, np.pi * 1.9, 16)
        _line(img, np.stack([np.cos(t) * 0.98, -0.02 * H + 1.0 * H * np.sin(t)], axis=1), pose, _scale_color(ap.hair, 1.0), 0.06)


def _draw_eyes_and_brows(img: np.ndarray, ap: Appearance, pose: Pose, ex: Expression, fx: float, ey: float) -> None:
    """Per side: socket shadow, eye (white, iris, pupil, upper lid) or a closed lid, and the brow."""
    brow_col = tuple(min(a, b) for a, b in zip(_scale_color(ap.hair, BROW_FROM_HAIR), _scale_color(ap.skin, BROW_FROM_SKIN)))
    eo = float(np.clip(ex.eye_open * (1.0 - SQUINT_PER_CHEEK * ex.cheek), 0.0, 1.6))
    for sx in (-1.0, 1.0):
        ex0 = sx * ap.eye_sep + fx
        _fill(img, _ellipse(ex0, ey - 0.02, ap.eye_w * 1.45, ap.eye_h * 1.9), pose, _scale_color(ap.skin, SKIN_SOCKET))
        if eo > EYE_CLOSED_BELOW:
            eh = ap.eye_h * eo
            _fill(img, _ellipse(ex0, ey, ap.eye_w, eh, n=28), pose, EYE_WHITE)
            ir = min(ap.eye_h * 0.95, max(eh, 0.03))
            _fill(img, _ellipse(ex0 + 0.5 * fx, ey, ap.eye_w * 0.46, ir, n=20), pose, ap.iris)
            _fill(img, _ellipse(ex0 + 0.5 * fx, ey, ap.eye_w * 0.2, min(ir, ap.eye_w * 0.2), n=12), pose, PUPIL)
            # upper lid line (strong edge)
            _line(img, _ellipse(ex0, ey, ap.eye_w * 1.03, eh * 1.05, n=16, a0=np.pi, a1=2 * np.pi), pose, LID, 0.045)
        else:
            closed = np.array([[ex0 - ap.eye_w, ey], [ex0, ey + 0.02], [ex0 + ap.eye_w, ey]])
            _line(img, closed, pose, LID, 0.05)
        # brows: outer end, middle, inner end
        by = ey - ap.brow_gap - BROW_RAISE_SHIFT * ex.brow_raise - ap.eye_h
        inner = sx * (ap.eye_sep - ap.eye_w * 1.1) + fx
        outer = sx * (ap.eye_sep + ap.eye_w * 1.35) + fx
        mid = 0.5 * (inner + outer)
        ti, tm = BROW_INNER_TILT
        brow = np.array([[inner, by - ti * ex.brow_inner + 0.02], [mid, by - 0.05 - tm * ex.brow_inner], [outer, by + 0.03]])
        _line(img, brow, pose, brow_col, ap.brow_thick)


def _draw_nose_and_cheeks(img: np.ndarray, ap: Appearance, pose: Pose, ex: Expression, fx: float, ey: float, light: float) -> None:
    """Nose (bridge shadow on the dark side, tip, nostrils) and cheeks raised by a smile."""
    H, skin = ap.face_h, ap.skin
    ny = ey + ap.nose_len * H
    side = -1.0 if light >= 0 else 1.0
    bridge = np.array([[fx + side * 0.05, ey + 0.05], [fx + side * 0.1, ny - 0.06], [fx + side * 0.02, ny]])
    _line(img, bridge, pose, _scale_color(skin, SKIN_BRIDGE), 0.04)
    _fill(img, _ellipse(fx, ny, ap.nose_w, 0.06, n=20), pose, _scale_color(skin, SKIN_NOSE))
    for sx in (-1.0, 1.0):
        _fill(img, _ellipse(fx + sx * ap.nose_w * 0.55, ny + 0.02, 0.045, 0.025, n=12), pose, _scale_color(skin, SKIN_NOSTRIL))
    if ex.cheek > CHEEK_SHOWN_ABOVE:
        for sx in (-1.0, 1.0):
            _fill(img, _ellipse(fx + sx * 0.55, ey + 0.33 * H, 0.2, 0.1, n=16), pose, _scale_color(skin, 1.0 - CHEEK_DARKEN * ex.cheek))


def _draw_mouth(img: np.ndarray, ap: Appearance, pose: Pose, ex: Expression, fx: float, fy: float) -> None:
    """Lips curved by the smile, opened by mouth_open; the inside and (smiling) teeth when open."""
    my = ap.mouth_y * ap.face_h + fy
    mw = ap.mouth_w * (1.0 + SMILE_WIDEN * max(ex.smile, 0.0))
    curve = SMILE_CURVE * ex.smile  # corners up for a smile
    op = MOUTH_OPENING * max(0.0, ex.mouth_open)
    xs = np.linspace(-1.0, 1.0, 15)
    base = my - curve * (xs**2 - 0.35)  # corners move, centre moves a little the other way
    upper = np.stack([fx + mw * xs, base - 0.01 * (1 - xs**2)], axis=1)
    lower = np.stack([fx + mw * xs, base + op * (1 - xs**2) ** 0.8], axis=1)
    lip = ap.lips
    if op > 0.01:
        _fill(img, np.concatenate([upper, lower[::-1]]), pose, MOUTH_INSIDE)
        if op > TEETH_ABOVE[0] and ex.smile > TEETH_ABOVE[1]:
            _fill(img, np.concatenate([upper, (upper + [0, 0.45 * op])[::-1]]), pose, TEETH)
    _line(img, upper - [0, ap.lip_thick * 0.6], pose, lip, ap.lip_thick)
    _line(img, lower + [0, ap.lip_thick * 0.6], pose, _scale_color(lip, 0.9), ap.lip_thick * 1.2)
    _line(img, upper, pose, _scale_color(ap.skin, SKIN_LIP_LINE), 0.025)


def _draw_glasses(img: np.ndarray, ap: Appearance, pose: Pose, fx: float, ey: float) -> None:
    """Round (1) or rectangular (2) rims, temples and the bridge."""
    gc = ap.glasses_color
    for sx in (-1.0, 1.0):
        ex0 = sx * ap.eye_sep + fx
        if ap.glasses == 1:
            rim = _ellipse(ex0, ey, ap.eye_w * 1.5, ap.eye_h * 2.1, n=28)
        else:
            rw, rh = ap.eye_w * 1.5, ap.eye_h * 1.9
            rim = np.array([[ex0 - rw, ey - rh], [ex0 + rw, ey - rh], [ex0 + rw, ey + rh], [ex0 - rw, ey + rh]])
        _line(img, rim, pose, gc, 0.028, closed=True)
        _line(img, np.array([[ex0 + sx * ap.eye_w * 1.6, ey - 0.02], [sx * 0.98, ey - 0.04]]), pose, gc, 0.03)
    _line(img, np.array([[fx - ap.eye_sep + ap.eye_w * 1.6, ey - 0.03], [fx, ey - 0.07], [fx + ap.eye_sep - ap.eye_w * 1.6, ey - 0.03]]), pose, gc, 0.03)


def _draw_hand(img: np.ndarray, ap: Appearance, pose: Pose, occ: Occlusion) -> None:
    """A hand over the face: palm and four fingers."""
    hx, hy = occ.hand_x, occ.hand_y * ap.face_h
    _fill(img, _ellipse(hx, hy, 0.75, 0.62 * ap.face_h, n=32), pose, occ.hand_color)
    for i in range(4):
        fxx = hx - 0.5 + i * 0.33
        finger = np.array([[fxx - 0.13, hy - 0.3], [fxx + 0.13, hy - 0.3], [fxx + 0.1, hy - 0.5 * ap.face_h - 0.45], [fxx - 0.1, hy - 0.5 * ap.face_h - 0.45]])
        _fill(img, finger, pose, occ.hand_color)
        _line(img, finger[[1, 2]], pose, _scale_color(occ.hand_color, HAND_LINE), 0.02)


def draw_person(img: np.ndarray, ap: Appearance, pose: Pose, ex: Expression, occ: Occlusion, light: float = 0.0) -> None:
    """Draw shoulders, head, hair, face features and occluders onto ``img`` (in place).

    ``light`` in -1..1 moves the highlight on the face left/right (shading).
    Later steps paint over earlier ones, so the order below is part of the picture.
    """
    _draw_body(img, ap, pose)
    if occ.kind == "away":
        _draw_back_of_head(img, ap, pose)
        return
    _draw_head(img, ap, pose, light)
    _draw_hair(img, ap, pose)
    fx = YAW_SHIFT * pose.yaw  # fake turn: features shift sideways
    fy = PITCH_SHIFT * pose.pitch
    ey = ap.eye_y * ap.face_h + fy
    _draw_eyes_and_brows(img, ap, pose, ex, fx, ey)
    _draw_nose_and_cheeks(img, ap, pose, ex, fx, ey, light)
    _draw_mouth(img, ap, pose, ex, fx, fy)
    if ap.glasses:
        _draw_glasses(img, ap, pose, fx, ey)
    if occ.kind == "hand":
        _draw_hand(img, ap, pose, occ)
