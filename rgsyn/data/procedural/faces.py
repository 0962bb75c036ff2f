"""Procedural faces: the embedded stand-in for aligned face crops (CASIA/LFW-style, 112x112 or smaller).

Identity is fixed per person: head geometry (width, height, jaw, chin, cheeks), skin tone, eyes (shape,
size, spacing, colour), brows, nose, mouth, ears, hair style and colour, facial hair, glasses, a mole.
The skin tone also fixes one of four demographic groups, ``tone1`` (lightest) .. ``tone4`` (darkest):
the RFW-like grouping used for bias reports. Hair and eye colours get darker with the tone, so darker
groups have fewer colour cues, as in real data; every other attribute is drawn independently of it.

Nuisance is drawn per image: yaw (features slide across a cylinder-shaped head and the far side
compresses; near profile one eye is hidden and the nose sticks out of the outline), pitch, roll,
illumination (direction, strength, colour cast, exposure), expression (smile, open mouth, eye
openness, brow raise), age around the identity's base age (wrinkles, greying, receding hair, sagging
jaw, thinner lips), blur, occluders (sunglasses, mask, hand, scarf), background clutter and clothes.
``yaw``, ``age`` and ``pitch`` can be forced, which is how the pair sets of ``face_pairs`` control
pose and age gaps.

How it is drawn: every pixel inside the head outline is mapped to surface coordinates (phi, v) on a
vertical cylinder turned by the yaw (phi = arcsin(x / half-width) - yaw). Eyes, brows, mouth, hair
line, beard and wrinkles are masks in (phi, v), so turning the head foreshortens and hides them for
free; only what leaves the surface (nose tip, ears, glasses, occluders) is drawn in image space.
Shapes are drawn at 2x and box-filtered down, which anti-aliases edges.

Everything is a pure function of the generator passed in; callers seed one generator per image,
``np.random.default_rng([seed, STREAM, ...])``, so rendering twice gives identical pixels.
``GENERAL_STREAM`` seeds the general-domain set; ``face_pairs`` owns the train and test streams.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
import torch

GROUPS = ("tone1", "tone2", "tone3", "tone4")
HAIR_STYLES = ("bald", "crew", "short", "fringe", "receding", "long", "curly", "bun")
FACIAL_HAIR = ("none", "moustache", "goatee", "beard")
GLASSES = ("none", "round", "square")
OCCLUDERS = ("sunglasses", "mask", "hand", "scarf")
GENERAL_STREAM = 33  # general-domain seeds are [seed, 33, ...]; face_pairs uses 31 (train), 32 (test)

# skin anchors, light -> dark; tone t in [0, 1) interpolates them and group = floor(4 t)
_SKIN = np.array([(0.98, 0.85, 0.75), (0.90, 0.72, 0.58), (0.76, 0.55, 0.40), (0.55, 0.37, 0.25),
                  (0.32, 0.21, 0.14)])
_HAIR = np.array([(0.06, 0.05, 0.05), (0.20, 0.13, 0.08), (0.38, 0.25, 0.14), (0.58, 0.42, 0.25),
                  (0.82, 0.68, 0.42), (0.58, 0.24, 0.10)])  # black, dark/mid/light brown, blond, red
_IRIS = np.array([(0.18, 0.10, 0.06), (0.36, 0.22, 0.10), (0.45, 0.38, 0.20), (0.30, 0.46, 0.30),
                  (0.30, 0.48, 0.70), (0.50, 0.56, 0.62)])  # dark brown, brown, hazel, green, blue, grey
_GREY = np.array([0.80, 0.80, 0.80])
HALF_PI = np.pi / 2


@dataclass(frozen=True)
class FaceIdentity:
    group: str  # tone1..tone4: the RFW-like demographic group, a band of `tone`
    tone: float  # 0 (lightest) .. 1 (darkest)
    skin: tuple
    masc: float  # 0..1, drives jaw, brows and the odds of facial hair / long hair
    face_w: float  # head half-width, as a fraction of the image
    face_h: float  # half-height / half-width
    jaw: float  # width of the lower face relative to the cheeks
    chin: float  # exponent of the chin curve: small = square, large = pointed
    cheek: float
    eye_sep: float  # sin of the eye angle on the head cylinder
    eye_y: float
    eye_w: float
    eye_h: float
    eye_tilt: float  # > 0 lifts the outer corners
    iris: tuple
    brow_thick: float
    brow_angle: float
    brow_gap: float
    nose_len: float
    nose_w: float
    mouth_w: float
    lip: float
    lip_color: tuple
    hair_style: str
    hair: tuple
    hairline: float
    grey_rate: float
    facial_hair: str
    beard_density: float
    glasses: str
    frame: tuple
    mole: tuple  # (phi, v) or () for none
    base_age: float


def _pick(rng, palette: np.ndarray, weights) -> tuple:
    w = np.asarray(weights, float)
    c = palette[rng.choice(len(palette), p=w / w.sum())] * rng.uniform(0.9, 1.1, 3)
    return tuple(np.clip(c, 0, 1).tolist())


def make_face_identity(rng: np.random.Generator, group: int | None = None) -> FaceIdentity:
    """Draw one person. ``group`` (0..3) forces the tone band; otherwise it is uniform."""
    g = int(rng.integers(4)) if group is None else int(group)
    tone = (g + rng.uniform(0.05, 0.95)) / 4
    skin = np.array([np.interp(tone * 4, np.arange(5), _SKIN[:, c]) for c in range(3)])
    skin = np.clip(skin * (1 + rng.normal(0, 0.03, 3)) + np.array([0.02, 0, -0.02]) * rng.normal(), 0, 1)
    dark = tone  # darker skin: darker hair and eyes
    masc = float(rng.beta(0.6, 0.6))
    style_w = np.array([0.6 * masc, 1.5 * masc, 2, 1, 0.7 * masc, 2.5 * (1 - masc), 1, 1 * (1 - masc)]) + 0.05
    fh_w = np.array([1, 0.3 * masc, 0.3 * masc, 0.5 * masc])
    h, s, v = colorsys.rgb_to_hsv(*skin)
    return FaceIdentity(
        group=GROUPS[g], tone=float(tone), skin=tuple(skin.tolist()), masc=masc,
        face_w=float(rng.uniform(0.30, 0.36) * (0.97 + 0.05 * masc)), face_h=float(rng.uniform(1.2, 1.42)),
        jaw=float(rng.uniform(0.55, 0.8) + 0.1 * masc), chin=float(rng.uniform(0.25, 0.7)),
        cheek=float(rng.uniform(-0.04, 0.08)),
        eye_sep=float(rng.uniform(0.34, 0.46)), eye_y=float(rng.uniform(-0.06, 0.04)),
        eye_w=float(rng.uniform(0.13, 0.2)), eye_h=float(rng.uniform(0.04, 0.075)),
        eye_tilt=float(rng.normal(0, 0.12)),
        iris=_pick(rng, _IRIS, [1 + 3 * dark, 1 + dark, 1 - dark, 1.2 * (1 - dark) ** 3, 1.5 * (1 - dark) ** 3,
                                0.5 * (1 - dark) ** 3]),
        brow_thick=float(rng.uniform(0.022, 0.05) * (0.8 + 0.4 * masc)), brow_angle=float(rng.normal(0, 0.2)),
        brow_gap=float(rng.uniform(0.1, 0.17)),
        nose_len=float(rng.uniform(0.26, 0.4)), nose_w=float(rng.uniform(0.1, 0.19)),
        mouth_w=float(rng.uniform(0.26, 0.42)), lip=float(rng.uniform(0.022, 0.05)),
        lip_color=tuple(colorsys.hsv_to_rgb((h - rng.uniform(0.0, 0.04)) % 1, min(1, s + 0.2), v * 0.75)),
        hair_style=str(rng.choice(HAIR_STYLES, p=style_w / style_w.sum())),
        hair=_pick(rng, _HAIR, [1 + 4 * dark, 1 + dark, 1, 1 - dark, 1.5 * (1 - dark) ** 2, 0.3 * (1 - dark) ** 2]),
        hairline=float(rng.uniform(-0.62, -0.46)), grey_rate=float(rng.uniform(0.5, 1.3)),
        facial_hair=str(rng.choice(FACIAL_HAIR, p=fh_w / fh_w.sum())), beard_density=float(rng.uniform(0.35, 1)),
        glasses=str(rng.choice(GLASSES, p=[0.7, 0.15, 0.15])), frame=_pick(rng, _HAIR, [3, 1, 1, 1, 1, 1]),
        mole=(float(rng.uniform(-1, 1)), float(rng.uniform(-0.3, 0.8))) if rng.random() < 0.3 else (),
        base_age=float(rng.uniform(18, 70)),
    )


@dataclass(frozen=True)
class Nuisance:
    yaw: float  # radians, > 0 turns the face towards image right
    pitch: float
    roll: float
    scale: float
    dx: float
    dy: float
    light_angle: float
    light: float  # strength of the directional gradient
    exposure: float
    cast: tuple  # per-channel gain
    smile: float
    mouth_open: float
    eye_open: float
    brow_raise: float
    age: float  # years
    blur: int  # 3x3 blur passes at the output size
    noise: float
    occluder: str  # none | sunglasses | mask | hand | scarf
    clothes: tuple


def sample_nuisance(rng: np.random.Generator, ident: FaceIdentity, *, yaw=None, age=None, pitch=None,
                    occlusion_prob: float = 0.15, broad: bool = False) -> Nuisance:
    """Draw the capture conditions of one image; ``broad`` widens pose/age/light (general domain).

    The draws happen in a fixed order whatever is forced, so two calls with equally seeded generators
    differ only in what was forced.
    """
    k = 1.6 if broad else 1.0
    d_yaw, d_pitch, d_age = rng.normal(0, 0.3 * k), rng.normal(0, 0.12 * k), rng.normal(0, 2.5 * k * k)
    occ = str(rng.choice(OCCLUDERS)) if rng.random() < occlusion_prob else "none"
    return Nuisance(
        yaw=float(np.clip(d_yaw, -1.45, 1.45) if yaw is None else yaw),
        pitch=float(np.clip(d_pitch, -0.45, 0.45) if pitch is None else pitch),
        roll=float(rng.normal(0, 0.05 * k)), scale=float(rng.uniform(0.93, 1.07)),
        dx=float(rng.normal(0, 0.02 * k)), dy=float(rng.normal(0, 0.02 * k)),
        light_angle=float(rng.uniform(0, 2 * np.pi)), light=float(rng.uniform(0, 0.55 * k)),
        exposure=float(rng.uniform(0.75, 1.2)), cast=tuple(np.clip(1 + rng.normal(0, 0.06 * k, 3), 0.8, 1.2).tolist()),
        smile=float(rng.uniform(0.3, 1) if rng.random() < 0.4 else 0.0),
        mouth_open=float(rng.uniform(0.2, 1) if rng.random() < 0.2 else 0.0),
        eye_open=float(0.15 if rng.random() < 0.05 else rng.uniform(0.65, 1.1)),
        brow_raise=float(rng.normal(0, 0.4)),
        age=float(np.clip(ident.base_age + d_age if age is None else age, 12, 90)),
        blur=int(rng.choice([0, 0, 0, 1, 2])), noise=float(rng.uniform(0.005, 0.03)), occluder=occ,
        clothes=tuple(rng.uniform(0.05, 0.9, 3).tolist()),
    )


class _Canvas:
    """A float RGB image at 2x with the pixel grid rotated by the roll around the face centre."""

    def __init__(self, n: int, cx: float, cy: float, roll: float):
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
        c, s = np.cos(roll), np.sin(roll)
        self.x = cx + c * (xx - cx) + s * (yy - cy)  # (n, n), face-aligned coordinates
        self.y = cy - s * (xx - cx) + c * (yy - cy)
        self.img = np.zeros((n, n, 3), np.float32)  # (n, n, 3)

    def paint(self, mask, color):
        self.img[mask] = color

    def shade(self, mask, factor):
        self.img[mask] *= factor

    def ellipse(self, cx, cy, rx, ry):
        return ((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2 <= 1

    def rect(self, x0, y0, x1, y1):
        return (self.x >= x0) & (self.x < x1) & (self.y >= y0) & (self.y < y1)


def _background(cv: _Canvas, rng):
    n = cv.img.shape[0]
    cv.img[:] = rng.uniform(0.1, 0.9, 3).astype(np.float32)
    cv.img *= (1 + rng.uniform(-0.25, 0.25) * (cv.y / n - 0.5))[..., None]  # wall gradient
    for _ in range(int(rng.integers(1, 5))):  # clutter: frames, windows, people behind
        x0, y0 = rng.uniform(-0.2, 1, 2) * n
        m = cv.rect(x0, y0, x0 + rng.uniform(0.1, 0.5) * n, y0 + rng.uniform(0.1, 0.6) * n)
        if rng.random() < 0.4:
            m = cv.ellipse(x0, y0, rng.uniform(0.08, 0.3) * n, rng.uniform(0.08, 0.3) * n)
        cv.paint(m, rng.uniform(0.05, 0.95, 3))


def _ring(cv, cx, cy, rx, ry, t, square: bool):
    if square:
        inner = cv.rect(cx - rx + t, cy - ry + t, cx + rx - t, cy + ry - t)
        return cv.rect(cx - rx, cy - ry, cx + rx, cy + ry) & ~inner
    return cv.ellipse(cx, cy, rx, ry) & ~cv.ellipse(cx, cy, max(rx - t, 0.1), max(ry - t, 0.1))


def _outline(v: np.ndarray, ident: FaceIdentity, ag: float) -> np.ndarray:
    """Half-width of the head outline at height v (-1 top .. 1 chin), in units of the half-width."""
    ell = np.sqrt(1 - np.clip(v, -1, 1) ** 2)
    jaw = 1 - (1 - ident.jaw - 0.06 * ag) * np.clip(v, 0, 1) ** (1 + 2 * ident.chin)  # the jaw sags with age
    w = np.where(v < 0, ell ** 0.8, ell ** 0.5 * jaw)
    return w * (1 + ident.cheek * np.exp(-((v - 0.2) / 0.25) ** 2))


def draw_face(ident: FaceIdentity, nu: Nuisance, rng: np.random.Generator, size: int) -> np.ndarray:
    """One capture of ``ident`` under ``nu`` -> uint8 (size, size, 3). ``rng`` draws the clutter only."""
    n = 2 * size
    R = ident.face_w * n * nu.scale  # head half-width in canvas pixels
    ag = float(np.clip((nu.age - 35) / 35, 0, 1.3))  # how much the age shows
    H = R * ident.face_h * (1 + 0.03 * ag)
    cx, cy = n * (0.5 + nu.dx), n * (0.47 + nu.dy)
    cv = _Canvas(n, cx, cy, nu.roll)
    sy, cyaw = np.sin(nu.yaw), np.cos(nu.yaw)
    skin = np.asarray(ident.skin, np.float32) * (1 - 0.06 * ag)
    grey = float(np.clip((nu.age - 38) / 35 * ident.grey_rate, 0, 0.9))
    hair = (1 - grey) * np.asarray(ident.hair) + grey * _GREY
    brow_col = (1 - 0.5 * grey) * np.asarray(ident.hair) * 0.8 + 0.5 * grey * _GREY
    style = ident.hair_style
    if style in ("crew", "short", "fringe") and ident.masc > 0.6 and ag > 0.5:
        style = "receding"  # hair recedes with age for some

    _background(cv, rng)
    cv.paint(cv.ellipse(cx - 0.2 * R * sy, cy + 1.95 * H, 2.1 * R, 0.85 * H), nu.clothes)  # shoulders
    if style == "long":  # hair falling behind the neck, shifted to the back of a turned head
        hx = cx - 0.35 * R * sy
        cv.paint(cv.rect(hx - 1.12 * R, cy - 0.3 * H, hx + 1.12 * R, cy + 1.25 * H)
                 | cv.ellipse(hx, cy - 0.3 * H, 1.12 * R, 0.8 * H), hair * 0.85)
    cv.paint(cv.rect(cx - 0.5 * R - 0.15 * R * sy, cy + 0.5 * H, cx + 0.5 * R - 0.15 * R * sy, n + 1), skin * 0.78)
    vol = {"bald": -1, "crew": 0.03, "short": 0.08, "fringe": 0.1, "receding": 0.04, "long": 0.1,
           "curly": 0.22, "bun": 0.06}[style]
    if vol > 0:  # hair volume outside the skull outline
        low = {"long": 0.9, "curly": 0.2}.get(style, 0.0)
        hx, hy = cx - 0.12 * R * sy, cy - 0.03 * H
        m = cv.ellipse(hx, hy, R * (1.02 + vol), H * (1.01 + 0.7 * vol)) & (cv.y < cy + low * H)
        if style == "curly":
            for a in np.linspace(-2.6, -0.5, 7):
                m |= cv.ellipse(hx + 1.05 * R * np.cos(a), hy + 1.0 * H * np.sin(a), 0.3 * R, 0.3 * R)
        elif style == "receding":  # volume only over the temples, the crown is bare
            m &= np.abs(cv.x - hx) > 0.6 * R
        elif style == "bun":
            m |= cv.ellipse(cx - 0.45 * R * sy, cy - 1.05 * H, 0.38 * R, 0.32 * R)
        cv.paint(m, hair)
    for side in (-1, 1):  # ears sticking out behind the head outline
        if np.cos(side * HALF_PI + nu.yaw) < 0.35:
            cv.paint(cv.ellipse(cx + side * R * 0.97 * cyaw, cy + 0.1 * H, 0.14 * R, 0.2 * H), skin * 0.92)

    # --- the head: surface coordinates (phi, v) of every pixel inside the outline
    v = (cv.y - cy) / H
    s = (cv.x - cx) / np.maximum(R * _outline(v, ident, ag), 1e-3)
    head = (np.abs(s) <= 1) & (np.abs(v) <= 1)
    psi = np.arcsin(np.clip(s, -1, 1))
    phi = psi - nu.yaw
    sv = v - 0.3 * np.sin(nu.pitch) * np.cos(psi)  # looking down moves features down
    cv.img[head] = (skin * (0.8 + 0.2 * np.cos(psi))[..., None])[head]

    def on(mask):
        return mask & head

    def surf_ellipse(p0, v0, rp, rv, vv=sv):
        return on(((phi - p0) / rp) ** 2 + ((vv - v0) / rv) ** 2 <= 1)

    # ears on the surface when the head turns them towards the camera
    for side in (-1, 1):
        if np.cos(side * HALF_PI + nu.yaw) >= 0.2:
            cv.paint(surf_ellipse(side * HALF_PI, 0.1, 0.3, 0.2), skin * 0.9)
            cv.paint(surf_ellipse(side * HALF_PI, 0.1, 0.15, 0.11), skin * 0.7)
    # hair on the head: back of the head, then the cap above the hair line
    if style != "bald":
        back = on(np.abs(phi) > HALF_PI + 0.15) & (sv < (1.0 if style == "long" else 0.2))
        line = ident.hairline + 0.45 * (phi / HALF_PI) ** 2 - (0.25 * ag if style == "receding" else 0)
        if style == "fringe":
            line = np.maximum(line, -0.3 + 0.2 * (phi / HALF_PI) ** 2)
        cap = on(sv < line)
        if style == "receding":
            cap &= (np.abs(phi) > 0.6) | (sv < ident.hairline - 0.35 * ag)
        cv.paint(back | cap, hair)
    ve, mv = ident.eye_y, ident.eye_y + ident.nose_len + 0.24  # eye and mouth heights
    nose_v = ve + ident.nose_len
    # age: forehead lines and nasolabial folds (the eye sockets deepen below)
    if ag > 0:
        for lv in (-0.42, -0.34, -0.26):
            cv.shade(on((np.abs(sv - lv) < 0.012) & (np.abs(phi) < 0.55) & (sv > ident.hairline)), 1 - 0.22 * ag)
        t = np.clip((sv - nose_v) / (mv + 0.06 - nose_v), 0, 1)
        for side in (-1, 1):
            fold = np.abs(phi - side * (ident.nose_w + 0.06 + t * (ident.mouth_w - ident.nose_w))) < 0.025
            cv.shade(on(fold & (sv > nose_v - 0.02) & (sv < mv + 0.06)), 1 - 0.25 * ag)
    if ident.mole:
        cv.paint(surf_ellipse(ident.mole[0], ident.mole[1], 0.035, 0.025), skin * 0.45)
    # eyes: socket shadow, lash line, white, iris, pupil
    eo = max(nu.eye_open * (1 - 0.15 * ag), 0.1)
    for side in (-1, 1):
        pe = side * np.arcsin(ident.eye_sep)
        se = sv + side * ident.eye_tilt * (phi - pe)  # tilt > 0 lifts the outer corners
        cv.shade(surf_ellipse(pe, ve + 0.01, ident.eye_w * 1.5, ident.eye_h * 2.2), 0.88 - 0.06 * ag)
        eh = ident.eye_h * eo
        cv.paint(surf_ellipse(pe, ve - 0.15 * eh, ident.eye_w * 1.1, eh * 1.35, se), (0.1, 0.07, 0.06))
        white = surf_ellipse(pe, ve, ident.eye_w, eh, se)
        cv.paint(white, (0.9, 0.88, 0.85))
        ir = ident.eye_h * H * 0.9  # iris radius in pixels, round on the image
        iris = white & (((phi - pe) * R) ** 2 + ((sv - ve) * H) ** 2 <= ir ** 2)
        cv.paint(iris, ident.iris)
        cv.paint(iris & (((phi - pe) * R) ** 2 + ((sv - ve) * H) ** 2 <= (0.45 * ir) ** 2), (0.03, 0.03, 0.03))
        # brow: a tilted band above the eye
        bv = ve - ident.brow_gap - 0.035 * nu.brow_raise - side * ident.brow_angle * (phi - pe) * 0.3
        brow = on((np.abs(sv - bv) < ident.brow_thick) & (np.abs(phi - pe - side * 0.03) < ident.eye_w * 1.35))
        cv.paint(brow, brow_col)
    # nose: ridge highlight, shadow on the side away from the light, nostrils
    lside = 1 if np.cos(nu.light_angle) < 0 else -1
    cv.shade(on((np.abs(phi) < 0.03) & (sv > ve + 0.05) & (sv < nose_v)), 1.08)
    cv.shade(on((np.abs(phi - lside * ident.nose_w * 0.6) < 0.035) & (sv > ve + 0.06) & (sv < nose_v)), 0.85)
    cv.shade(on((np.abs(phi) < ident.nose_w) & (sv > nose_v + 0.02) & (sv < nose_v + 0.05)), 0.8)
    for side in (-1, 1):
        cv.paint(surf_ellipse(side * ident.nose_w * 0.55, nose_v + 0.015, 0.045, 0.02), skin * 0.4)
    # facial hair under the mouth so the lips stay visible
    beard_col = (1 - ident.beard_density) * skin + ident.beard_density * hair
    if ident.facial_hair == "beard":
        cv.paint(on((sv > mv - 0.05 - 0.5 * (phi / HALF_PI) ** 2) & (np.abs(phi) < HALF_PI + 0.1)), beard_col)
    if ident.facial_hair == "goatee":
        cv.paint(on((sv > mv + 0.02) & (np.abs(phi) < 0.28)), beard_col)
    if ident.facial_hair != "none":  # every style has a moustache
        top = mv - ident.lip
        cv.paint(on((np.abs(phi) < ident.mouth_w + 0.05) & (sv > top - 0.11) & (sv < top - 0.01)), beard_col)
    # mouth: lips between two curves that bend up with the smile; an opening in between
    t = phi / ident.mouth_w
    rim = np.sqrt(np.clip(1 - t ** 2, 0, 1))
    c = mv - 0.07 * nu.smile * t ** 2
    o = 0.045 * nu.mouth_open * rim
    lip = ident.lip * (1 - 0.3 * ag)
    lips = on((np.abs(t) < 1) & (sv > c - o - lip * rim) & (sv < c + o + 1.25 * lip * rim))
    cv.paint(lips, ident.lip_color)
    cv.paint(on((np.abs(t) < 1) & (np.abs(sv - c) < o + 0.008)), (0.15, 0.05, 0.05))
    if nu.smile > 0.5 and nu.mouth_open > 0.3:
        cv.paint(on((np.abs(t) < 0.75) & (sv > c - o) & (sv < c)), (0.9, 0.88, 0.82))

    # --- off the surface: nose tip, glasses, occluders
    if abs(sy) > 0.12:  # the nose sticks out of a turned head
        wv = R * float(_outline(np.asarray(nose_v), ident, ag))  # outline half-width at the nose
        xb, xt = cx + wv * 0.9 * sy, cx + (wv * 0.9 + 0.5 * R * ident.nose_len / 0.33) * sy
        yb, yt = cy + (ve + 0.05) * H, cy + nose_v * H
        u = (cv.y - yb) / (yt - yb)  # 0 at the bridge, 1 at the tip, then back under the nose
        reach = np.where(u <= 1, u, np.clip(1 - (u - 1) * 4, 0, 1))
        out = (cv.x - xb) * np.sign(sy)  # distance outwards from the bridge line
        tip = (u >= 0) & (reach > 0) & (out >= 0) & (out <= reach * abs(xt - xb))
        cv.paint(tip, skin * (0.8 + 0.15 * abs(cyaw)))
    eyes = []
    for side in (-1, 1):
        a = side * np.arcsin(ident.eye_sep) + nu.yaw
        if np.cos(a) > 0.15:
            ex = cx + R * 0.95 * np.sin(a)
            eyes.append((ex, cy + (ve - 0.3 * np.sin(nu.pitch) * np.cos(a)) * H, np.cos(a), side))
    if ident.glasses != "none" and nu.occluder != "sunglasses":
        t = max(0.035 * R, 1.0)
        for ex, ey, fc, side in eyes:
            cv.paint(_ring(cv, ex, ey, 0.24 * R * fc, 0.14 * H, t, ident.glasses == "square"), ident.frame)
            far = cx + R * 0.98 * np.sin(side * HALF_PI + nu.yaw)  # temple arm towards the ear
            lo, hi = sorted((ex + side * 0.24 * R * fc, far))
            cv.paint(cv.rect(lo, ey - 0.1 * H - t / 2, hi, ey - 0.1 * H + t / 2), ident.frame)
        if len(eyes) == 2:
            cv.paint(cv.rect(eyes[0][0] + 0.2 * R * eyes[0][2], eyes[0][1] - 0.06 * H - t / 2,
                             eyes[1][0] - 0.2 * R * eyes[1][2], eyes[0][1] - 0.06 * H + t / 2), ident.frame)
    if nu.occluder == "sunglasses":
        for ex, ey, fc, _ in eyes:
            cv.paint(cv.ellipse(ex, ey, 0.27 * R * fc + 1, 0.16 * H), (0.05, 0.05, 0.06))
        if len(eyes) == 2:
            cv.paint(cv.rect(eyes[0][0], eyes[0][1] - 0.09 * H, eyes[1][0], eyes[0][1] - 0.05 * H), (0.05, 0.05, 0.06))
    elif nu.occluder == "mask":
        col = (0.55, 0.7, 0.85) if rng.random() < 0.5 else (0.92, 0.92, 0.9)
        cv.paint(on((sv > nose_v - 0.12) & (np.abs(phi) < 1.35)), col)
    elif nu.occluder == "hand":
        side = 1 if rng.random() < 0.5 else -1
        hx, hy = cx + side * 0.55 * R, cy + rng.uniform(0.3, 0.9) * H
        m = cv.ellipse(hx, hy, 0.55 * R, 0.45 * H)
        for f in range(4):  # fingers reaching up over the cheek
            m |= cv.rect(hx - 0.45 * R + 0.24 * R * f, hy - 0.95 * H, hx - 0.29 * R + 0.24 * R * f, hy)
        cv.paint(m, skin * 0.95)
    elif nu.occluder == "scarf":
        col = rng.uniform(0.1, 0.9, 3)
        m = cv.rect(cx - 1.5 * R, cy + 0.78 * H, cx + 1.5 * R, n + 1)
        cv.paint(m, col)
        cv.paint(m & (((cv.y - cy) / max(0.12 * H, 1)).astype(int) % 2 == 0), col * 0.6)

    # light: a directional gradient across the face, then exposure and colour cast
    grad = ((cv.x - cx) * np.cos(nu.light_angle) + (cv.y - cy) * np.sin(nu.light_angle)) / (2 * R)
    cv.img *= np.clip(1 + nu.light * grad, 0.35, 1.7)[..., None]
    img = cv.img.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))  # (size, size, 3), anti-aliased
    for _ in range(nu.blur):
        img = 0.5 * img + 0.125 * (np.roll(img, 1, 0) + np.roll(img, -1, 0) + np.roll(img, 1, 1) + np.roll(img, -1, 1))
    img = img * np.asarray(nu.cast, np.float32) * nu.exposure
    img = img + rng.normal(0, nu.noise, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_face(ident: FaceIdentity, rng: np.random.Generator, size: int = 32, *, yaw=None, age=None,
                pitch=None, occlusion_prob: float = 0.15, broad: bool = False) -> np.ndarray:
    """Draw the nuisance from ``rng`` (forcing ``yaw``/``age``/``pitch`` if given), then the face.

    -> uint8 (size, size, 3). Yaw and pitch are in radians, age in years.
    """
    nu = sample_nuisance(rng, ident, yaw=yaw, age=age, pitch=pitch, occlusion_prob=occlusion_prob, broad=broad)
    return draw_face(ident, nu, rng, size)


def render_general_faces(num_classes: int, per_class: int, size: int, seed: int,
                         occlusion_prob: float = 0.3, first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The general-domain face set that trains a face prior -> (images uint8 (N, 3, H, W), labels (N,)).

    Identities come from their own stream, ``[seed, GENERAL_STREAM, 0, c]``, which the train
    (``[seed, 31, ...]``) and test (``[seed, 32, ...]``) streams of ``face_pairs`` never use, so no
    evaluation or target identity can recur here; the nuisance is broader (pose, age, light). Captures
    `first` .. `first + per_class - 1` of each class: a larger `first` draws new images of them.
    """
    imgs, labels = [], []
    for c in range(num_classes):
        ident = make_face_identity(np.random.default_rng([seed, GENERAL_STREAM, 0, c]))
        for k in range(first, first + per_class):
            r = np.random.default_rng([seed, GENERAL_STREAM, 1, c, k])
            imgs.append(render_face(ident, r, size, occlusion_prob=occlusion_prob, broad=True))
            labels.append(c)
    if not imgs:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    return x, torch.tensor(labels, dtype=torch.long)
