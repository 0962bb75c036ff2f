"""A second procedural pedestrian set, "street", for checking that the method's defaults transfer.

The defaults and the generator prior were tuned on the embedded set (rgsyn/data/procedural/render.py), so
good numbers there may only mean a good fit to its style. This set shares nothing with it but the
Market-1501 on-disk layout: other people, other cameras, 128x64 instead of 64x32, and a split shaped
like a small real set (120 long-tailed train identities, ~400 images, 100 test identities).

What differs from render.py:

* people: open-front coats and jackets, hoodies, sweaters, tees, dresses; plaid, gingham, two-tone
  diagonal and colour-block fabrics; scarves, beanies, hair styles, bags carried in the hand; seasonal
  palettes heavy on earth tones and darks instead of a uniform hue circle; more varied height,
  shoulders, hips, legs and head; knees and elbows; garments shaded by light and outlined;
* cameras: corridor, shop-front, zebra-crossing and plaza scenes with building and cast shadows; a
  downward tilt that enlarges heads and squashes legs; vignetting; strong exposure, white-balance and
  gamma changes; blocky chroma noise and the camera's own JPEG compression; horizontal motion blur;
  people cut at the border by loose or tight boxes.

Some coats come from a shared catalogue, so two people sometimes wear the same coat and differ only
in the rest. Everything is a pure function of (seed, stream, index); shapes are drawn at 2x and
box-filtered down, then saved as JPEG quality 90.
"""
from __future__ import annotations

import argparse
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rgsyn.data.market1501 import format_name

SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")
SCENES = ("corridor", "shopfront", "crossing", "plaza")
VIEWS = ("front", "back", "left", "right")

# seasonal palettes: earth tones and darks dominate, pastels and brights are the minority
PALETTES = (
    ((0.55, 0.25, 0.12), (0.76, 0.58, 0.2), (0.42, 0.42, 0.2), (0.38, 0.25, 0.15), (0.45, 0.12, 0.15),
     (0.74, 0.58, 0.4), (0.2, 0.3, 0.18)),  # autumn
    ((0.18, 0.18, 0.2), (0.1, 0.13, 0.28), (0.88, 0.85, 0.76), (0.07, 0.07, 0.08), (0.5, 0.5, 0.52),
     (0.4, 0.1, 0.14), (0.68, 0.55, 0.4)),  # winter
    ((0.7, 0.88, 0.78), (0.76, 0.7, 0.88), (0.95, 0.75, 0.78), (0.65, 0.8, 0.95), (0.96, 0.9, 0.6)),  # spring
    ((0.85, 0.15, 0.15), (0.1, 0.3, 0.75), (0.95, 0.5, 0.1), (0.1, 0.6, 0.6), (0.95, 0.95, 0.95)),  # summer
)
SEASON_P = (0.35, 0.35, 0.15, 0.15)
DENIM = ((0.2, 0.27, 0.42), (0.3, 0.4, 0.58), (0.13, 0.15, 0.22))
HAIR = ((0.06, 0.05, 0.05), (0.22, 0.14, 0.08), (0.45, 0.3, 0.17), (0.8, 0.66, 0.4), (0.6, 0.25, 0.1),
        (0.7, 0.7, 0.7), (0.75, 0.3, 0.55))
# part ids: outlines are drawn where the id changes, so each limb gets its own
SKIN, HAIRP, TOP, INNER, LEG_L, LEG_R, SHOE, SLEEVE_F, SLEEVE_B, BAG, SCARF, HAT, HOOD = range(1, 14)


@dataclass(frozen=True)
class StreetParams:
    """Size and split of the street set; the seed is a separate argument of render_street."""

    height: int = 128
    width: int = 64
    num_train_ids: int = 120
    train_images_min: int = 1
    train_images_max: int = 8
    zipf_a: float = 1.3
    zipf_shift: float = 2.0  # P(n) ∝ (n + shift)^-a: with a = 1.3 this gives ~400 train images for 120 ids
    num_test_ids: int = 100
    test_images_per_id: int = 8
    min_test_cameras: int = 4
    num_cameras: int = 6
    num_distractors: int = 100
    occlusion_prob: float = 0.25
    catalogue_prob: float = 0.3  # chance a person's coat comes from the shared catalogue
    jpeg_quality: int = 90


@dataclass(frozen=True)
class Walker:
    skin: tuple
    hair: tuple
    hair_style: str  # short | long | bun | ponytail | curly | bald
    top: str  # coat | jacket | hoodie | sweater | tee | dress
    top_col: tuple
    top_col2: tuple
    fabric: str  # solid | plaid | gingham | diagonal | block
    inner: tuple  # shirt under an open coat/jacket
    open_front: bool
    hood_up: bool
    lower: str  # trousers | jeans | shorts | skirt | leggings
    lower_col: tuple
    shoes: tuple
    scarf: tuple | None
    hat: tuple | None
    bag: str  # none | handbag | briefcase | tote | backpack
    bag_col: tuple
    height: float  # fraction of the frame
    shoulders: float  # half-width, fraction of figure height
    hips: float  # hip / shoulder width
    legs: float  # leg length, fraction of figure height
    head: float  # head radius, fraction of figure height
    limb: float  # limb radius, fraction of figure height


def dim(c, f: float) -> np.ndarray:
    return np.asarray(c, np.float32) * f


def _colour(rng, season: int) -> tuple:
    pal = PALETTES[season if rng.random() < 0.8 else rng.choice(4, p=SEASON_P)]
    c = np.asarray(pal[rng.integers(len(pal))]) * rng.uniform(0.85, 1.1) + rng.normal(0, 0.035, 3)
    return tuple(float(v) for v in np.clip(c, 0.02, 1.0))


def make_catalogue(rng, n: int = 12) -> list:
    """Popular coats (kind, colour, second colour, fabric) that several people may wear."""
    out = []
    for _ in range(n):
        s = rng.choice(4, p=SEASON_P)
        out.append((str(rng.choice(["coat", "jacket", "hoodie"])), _colour(rng, s), _colour(rng, s),
                    str(rng.choice(["solid", "solid", "plaid", "diagonal"]))))
    return out


def make_walker(rng, catalogue=(), catalogue_prob: float = 0.3) -> Walker:
    s = rng.choice(4, p=SEASON_P)
    t = rng.random()  # skin along a light-to-dark ramp, not from four fixed tones
    skin = (1 - t) * np.array([0.98, 0.82, 0.7]) + t * np.array([0.35, 0.23, 0.16]) + rng.normal(0, 0.02, 3)
    skin = tuple(float(v) for v in np.clip(skin, 0, 1))
    top = str(rng.choice(["coat", "coat", "jacket", "jacket", "hoodie", "sweater", "tee", "dress"]))
    top_col, top_col2 = _colour(rng, s), _colour(rng, s)
    fabric = str(rng.choice(["solid", "solid", "solid", "plaid", "gingham", "diagonal", "block"]))
    if catalogue and rng.random() < catalogue_prob:
        top, c1, c2, fabric = catalogue[rng.integers(len(catalogue))]
        top_col, top_col2 = (tuple(np.clip(np.asarray(c) + rng.normal(0, 0.02, 3), 0, 1)) for c in (c1, c2))
    lower = str(rng.choice(["trousers", "jeans", "jeans", "shorts", "skirt", "leggings"]))
    return Walker(
        skin=skin, hair=HAIR[rng.choice(len(HAIR), p=(0.3, 0.25, 0.15, 0.1, 0.06, 0.09, 0.05))],
        hair_style=str(rng.choice(["short", "short", "long", "bun", "ponytail", "curly", "bald"])),
        top=top, top_col=top_col, top_col2=top_col2, fabric=fabric, inner=_colour(rng, rng.integers(4)),
        open_front=bool(top in ("coat", "jacket") and rng.random() < 0.6),
        hood_up=bool(top == "hoodie" and rng.random() < 0.4),
        lower=lower, lower_col=DENIM[rng.integers(3)] if lower == "jeans" else _colour(rng, s),
        shoes=((0.92, 0.92, 0.9), (0.1, 0.08, 0.07), (0.35, 0.22, 0.12))[rng.integers(3)],
        scarf=_colour(rng, s) if rng.random() < (0.45 if top == "coat" else 0.15) else None,
        hat=_colour(rng, s) if rng.random() < 0.15 else None,
        bag=str(rng.choice(["none", "none", "handbag", "briefcase", "tote", "backpack"])), bag_col=_colour(rng, s),
        height=float(rng.uniform(0.68, 0.93)), shoulders=float(rng.uniform(0.085, 0.13)),
        hips=float(rng.uniform(0.72, 1.08)), legs=float(rng.uniform(0.43, 0.53)),
        head=float(rng.uniform(0.055, 0.072)), limb=float(rng.uniform(0.024, 0.04)),
    )


@dataclass(frozen=True)
class StreetCamera:
    scene: str
    colours: tuple  # three scene colours: main surface, ground, accent
    light: float  # -1..1: the side the light comes from (garment shading, cast shadows)
    tilt: float  # how far the camera looks down: enlarges heads, squashes legs
    vignette: float
    exposure: float
    temperature: float  # + warm, - cool white balance
    tint: float  # + green, - magenta
    gamma: float
    chroma: float  # std of blocky chroma noise
    jpeg: int  # quality of the camera's own compression (blockiness)
    blur_prob: float  # horizontal motion blur
    crop_prob: float  # person cut at the border
    shadow: float  # building shadow across the scene: 0 = none


def make_street_camera(rng, scene: str) -> StreetCamera:
    # built surfaces are mostly greyish: a grey level plus a modest colour offset
    surfaces = [np.clip(rng.uniform(0.25, 0.75) + rng.uniform(-0.18, 0.18, 3), 0, 1) for _ in range(3)]
    return StreetCamera(
        scene=scene, colours=tuple(tuple(float(v) for v in c) for c in surfaces),
        light=float(rng.uniform(-1, 1)), tilt=float(rng.choice([0.0, rng.uniform(0.1, 0.35)])),
        vignette=float(rng.uniform(0.0, 0.45)), exposure=float(rng.uniform(0.6, 1.3)),
        temperature=float(rng.uniform(-0.18, 0.18)), tint=float(rng.uniform(-0.08, 0.08)),
        gamma=float(rng.uniform(0.75, 1.3)), chroma=float(rng.uniform(0.0, 0.05)),
        jpeg=int(rng.choice([25, 40, 70, 95])), blur_prob=float(rng.uniform(0.0, 0.4)),
        crop_prob=float(rng.uniform(0.05, 0.25)), shadow=float(rng.choice([0.0, rng.uniform(0.35, 0.6)])),
    )


class Canvas:
    """RGB float image (drawn at 2x) with a part map: part > 0 marks the person for shading and outlines."""

    def __init__(self, h: int, w: int):
        self.h, self.w, self.img = h, w, np.zeros((h, w, 3), np.float32)
        self.part = np.zeros((h, w), np.uint8)

    def _box(self, x0, y0, x1, y1):
        # primitives touch only their bounding box: a full-canvas mask per shape would be ~10x slower
        xa, xb = max(int(x0), 0), min(int(np.ceil(x1)), self.w)
        ya, yb = max(int(y0), 0), min(int(np.ceil(y1)), self.h)
        if xa >= xb or ya >= yb:
            return None
        Y, X = np.ogrid[ya:yb, xa:xb]
        return (slice(ya, yb), slice(xa, xb)), X + 0.5, Y + 0.5

    def _put(self, b, m, color, part):
        sl, X, Y = b
        c = color(X, Y) if callable(color) else color
        self.img[sl][m] = np.broadcast_to(np.asarray(c, np.float32), m.shape + (3,))[m]
        if part:
            self.part[sl][m] = part

    def ellipse(self, cx, cy, rx, ry, color, part=0, ymax=None):
        if b := self._box(cx - rx, cy - ry, cx + rx, cy + ry):
            m = ((b[1] - cx) / rx) ** 2 + ((b[2] - cy) / ry) ** 2 <= 1
            self._put(b, m & (b[2] < ymax) if ymax is not None else m, color, part)

    def trap(self, y0, y1, cx0, cx1, hw0, hw1, color, part=0):
        """Rows y0..y1 whose centre and half-width go linearly from (cx0, hw0) to (cx1, hw1)."""
        if b := self._box(min(cx0 - hw0, cx1 - hw1), y0, max(cx0 + hw0, cx1 + hw1), y1):
            t = (b[2] - y0) / max(y1 - y0, 1e-6)
            self._put(b, np.abs(b[1] - cx0 - t * (cx1 - cx0)) <= hw0 + t * (hw1 - hw0), color, part)

    def capsule(self, p0, p1, r, color, part=0):
        (x0, y0), (x1, y1) = p0, p1
        if b := self._box(min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r):
            dx, dy = x1 - x0, y1 - y0
            t = np.clip(((b[1] - x0) * dx + (b[2] - y0) * dy) / (dx * dx + dy * dy + 1e-6), 0, 1)
            self._put(b, (b[1] - x0 - t * dx) ** 2 + (b[2] - y0 - t * dy) ** 2 <= r * r, color, part)


def _fabric(kind, c1, c2, cx, y0, unit):
    """Garment fill anchored on the body, so the pattern moves with the person."""
    if kind == "solid":
        return c1
    a, b = np.asarray(c1, np.float32), np.asarray(c2, np.float32)

    def fill(X, Y):
        u, v = (X - cx) / unit, (Y - y0) / unit
        if kind == "plaid":  # tartan: half-mixed where one band set crosses, full where both do
            k = 0.5 * ((u % 3 < 1).astype(np.float32) + (v % 3 < 1)) - 0.3 * (np.abs(u % 3 - 1.8) < 0.15)
        elif kind == "gingham":
            k = 0.5 * ((np.floor(u) % 2).astype(np.float32) + np.floor(v) % 2)
        elif kind == "diagonal":
            k = (u + 0.8 * v > 3.5).astype(np.float32)
        else:  # colour block across the chest
            k = ((v > 1.5) & (v < 4.0)).astype(np.float32)
        k = k[..., None]
        return (1 - k) * a + k * b
    return fill


def _walker(cv: Canvas, wk: Walker, view: str, cx: float, top: float, fh: float, rng):
    side, sgn = view in ("left", "right"), (1 if view == "right" else -1)
    narrow = 0.62 if side else 1.0
    Y = lambda f: top + f * fh  # noqa: E731 — figure-relative height
    hr, lr = wk.head * fh, wk.limb * fh
    sw = wk.shoulders * fh * narrow
    hw = sw * wk.hips
    y_sh, y_hip, y_foot = Y(2.2 * wk.head + 0.02), Y(1 - wk.legs), Y(0.965)
    phase = rng.uniform(-1, 1)
    swing = (0.16 if side else 0.05) * fh * phase
    tcol = _fabric(wk.fabric, wk.top_col, wk.top_col2, cx, y_sh, 0.028 * fh)
    bare = wk.lower in ("shorts", "skirt") or wk.top == "dress"
    if wk.hair_style == "long" and view != "back" and not wk.hood_up:  # hair falling behind the shoulders
        cv.trap(Y(wk.head), y_sh + 0.1 * fh, cx, cx, hr * 1.05, hr * 1.25, wk.hair, HAIRP)
    if wk.bag == "backpack" and side:  # behind the back, seen from the side
        cv.trap(y_sh, y_sh + 0.2 * fh, cx - sgn * sw * 1.2, cx - sgn * sw * 1.2, sw * 0.5, sw * 0.55, wk.bag_col, BAG)
    # legs with knees: the back leg bends, both swing in opposite phase to the arms
    for s, part in ((-1, LEG_L), (1, LEG_R)):
        hip = (cx + s * hw * 0.5 * narrow, y_hip)
        foot = (cx + s * hw * 0.5 * narrow + s * swing, y_foot)
        knee = ((hip[0] + foot[0]) / 2 + (sgn * 0.02 * fh if side else 0), (y_hip + y_foot) / 2)
        leg = wk.skin if bare else wk.lower_col
        r = lr * (0.9 if wk.lower == "leggings" else 1.2)
        cv.capsule(hip, knee, r * 1.1, leg, part)
        cv.capsule(knee, foot, r, leg, part)
        if wk.lower == "shorts" and wk.top != "dress":
            cv.capsule(hip, ((hip[0] + knee[0]) / 2, (hip[1] + knee[1]) / 2), r * 1.3, wk.lower_col, part)
        boot = 1.8 if wk.shoes[0] < 0.5 and wk.top == "coat" else 1.0  # dark boots under coats
        cv.ellipse(foot[0] + (sgn * lr if side else 0), y_foot, lr * 1.6, 0.022 * fh * boot, wk.shoes, SHOE)
    if wk.lower == "skirt" and wk.top != "dress":
        cv.trap(y_hip - 0.03 * fh, y_hip + 0.18 * fh, cx, cx, hw * 1.05, hw * 1.5, wk.lower_col, INNER)
    # main garment: coats and dresses reach the knee, the rest stops at the hip
    hem = {"coat": y_hip + 0.22 * fh, "dress": y_hip + 0.2 * fh}.get(wk.top, y_hip + 0.03 * fh)
    flare = {"coat": 1.25, "dress": 1.6, "tee": 1.0}.get(wk.top, 1.05)
    cv.trap(y_sh, hem, cx, cx, sw, max(hw, sw * 0.85) * flare, tcol, TOP)
    if wk.open_front and view == "front":  # open front: the shirt shows in a wedge down the middle
        cv.trap(y_sh, hem, cx, cx, sw * 0.18, sw * 0.4, wk.inner, INNER)
    elif wk.top in ("jacket", "coat") and view == "front":
        cv.trap(y_sh, hem, cx, cx, 0.006 * fh, 0.006 * fh, dim(wk.top_col, 0.5), INNER)  # zip
    if wk.top == "hoodie" and view == "front":
        cv.trap(y_hip - 0.1 * fh, y_hip, cx, cx, sw * 0.5, sw * 0.6, dim(wk.top_col, 0.8), INNER)  # pocket
    if wk.top == "hoodie" and not wk.hood_up and view != "front":  # the hood lying on the back
        cv.ellipse(cx - sgn * sw * 0.5 * side, y_sh + 0.03 * fh, sw * 0.75, 0.07 * fh, dim(wk.top_col, 0.85), HOOD)
    if wk.bag == "backpack" and view == "back":
        cv.trap(y_sh + 0.02 * fh, y_sh + 0.22 * fh, cx, cx, sw * 0.8, sw * 0.85, wk.bag_col, BAG)
    if wk.bag == "tote":  # on the shoulder, hanging at the hip
        x = cx + (sgn if side else 1) * sw * 1.1
        cv.trap(y_hip - 0.12 * fh, y_hip + 0.04 * fh, x, x, sw * 0.35, sw * 0.45, wk.bag_col, BAG)
    # arms with elbows, sleeves from the garment (tees and dresses show the forearm)
    arms = ((-1, SLEEVE_B), (1, SLEEVE_F)) if not side else ((sgn, SLEEVE_F),)
    for s, part in arms:
        sh = (cx if side else cx + s * (sw - 0.3 * lr), y_sh + lr)
        a_x = -swing if side else s * 0.03 * fh  # side view: swings against the legs; front: hangs out
        elbow, hand = (sh[0] + 0.5 * a_x, y_sh + 0.16 * fh), (sh[0] + a_x, y_sh + 0.31 * fh)
        sleeve = wk.skin if wk.top in ("tee", "dress") else wk.top_col
        cv.capsule(sh, elbow, lr * 1.1, sleeve, part)
        cv.capsule(elbow, hand, lr, sleeve, part)
        if wk.top in ("tee", "dress"):
            cv.capsule(sh, (sh[0] + 0.5 * (elbow[0] - sh[0]), sh[1] + 0.06 * fh), lr * 1.3, wk.top_col, part)
        cv.ellipse(hand[0], hand[1] + lr * 0.5, lr * 0.9, lr * 1.1, wk.skin, part)
        if wk.bag in ("handbag", "briefcase") and part == SLEEVE_F:  # carried in the hand, swinging with it
            bw, bh = ((0.07, 0.09) if wk.bag == "handbag" else (0.1, 0.075)) * np.array([narrow * fh, fh])
            cv.trap(hand[1] + lr, hand[1] + lr + bh, hand[0], hand[0], bw, bw, wk.bag_col, BAG)
    # head, hair, hood, scarf, hat
    hx, hy = cx + (sgn * 0.015 * fh if side else 0), Y(wk.head * 1.05)
    cv.trap(hy + hr * 0.6, y_sh + 0.01 * fh, cx, cx, hr * 0.45, hr * 0.5, wk.skin, SKIN)  # neck
    if wk.scarf is not None:
        cv.trap(y_sh - 0.025 * fh, y_sh + 0.025 * fh, cx, cx, hr * 0.85, hr * 1.0, wk.scarf, SCARF)
        if view == "front":  # the hanging end
            x = cx + 0.3 * hr
            cv.trap(y_sh, y_sh + 0.16 * fh, x, x + 0.1 * hr, hr * 0.25, hr * 0.3, dim(wk.scarf, 0.85), SCARF)
    face = wk.hair if view == "back" and wk.hair_style != "bald" else wk.skin
    if wk.hood_up:
        cv.ellipse(hx, hy - 0.1 * hr, hr * 1.3, hr * 1.35, dim(wk.top_col, 0.85), HOOD)
        face = dim(wk.top_col, 0.85) if view == "back" else wk.skin
    cv.ellipse(hx, hy, hr * 0.82, hr, face, SKIN if face is wk.skin else HAIRP)
    if not wk.hood_up and wk.hair_style != "bald":
        cv.ellipse(hx, hy - 0.1 * hr, hr * 0.92, hr * 1.02, wk.hair, HAIRP, ymax=hy - 0.3 * hr)
        if wk.hair_style == "curly":
            for a in np.linspace(-2.6, -0.5, 5):
                cv.ellipse(hx + 0.85 * hr * np.cos(a), hy + 0.85 * hr * np.sin(a), hr * 0.35, hr * 0.35, wk.hair, HAIRP)
        elif wk.hair_style == "bun":
            cv.ellipse(hx - sgn * 0.5 * hr * side, hy - 1.05 * hr, 0.42 * hr, 0.38 * hr, wk.hair, HAIRP)
        elif wk.hair_style == "ponytail" and view != "front":
            d = -sgn * hr * side  # behind the head
            cv.capsule((hx + 0.8 * d, hy - 0.2 * hr), (hx + 1.1 * d, hy + 1.3 * hr), 0.28 * hr, wk.hair, HAIRP)
        elif wk.hair_style == "long" and view == "back":
            cv.trap(hy - 0.2 * hr, y_sh + 0.1 * fh, hx, hx, hr * 0.95, hr * 1.15, wk.hair, HAIRP)
    if wk.hat is not None and not wk.hood_up:  # beanie
        cv.ellipse(hx, hy - 0.35 * hr, hr * 0.98, hr * 0.8, wk.hat, HAT, ymax=hy - 0.25 * hr)


def _scene(cv: Canvas, cam: StreetCamera, ox: float, oy: float):
    """The camera's background; (ox, oy) moves it a little per image, as a detector box moves."""
    H, W = cv.h, cv.w
    Y, X = np.mgrid[0:H, 0:W].astype(np.float32)
    X, Y = X + 0.5 + ox, Y + 0.5 + oy
    c0, c1, c2 = (np.asarray(c, np.float32) for c in cam.colours)
    img = cv.img
    img[:] = c0
    if cam.scene == "corridor":  # one-point perspective: back wall, converging floor and ceiling
        vx, vy, bw, bh = W * 0.5, H * 0.36, W * 0.2, H * 0.12
        dx = np.abs(X - vx) - bw
        floor = (Y > vy + bh) & (dx < (Y - vy - bh) / 1.1)
        ceil = (Y < vy - bh) & (dx < (vy - bh - Y) / 1.1)
        side = ~floor & ~ceil & (dx > 0)
        img[side & (np.log(np.abs(X - vx) + 1) * 4 % 3 < 1) & (Y > vy - bh * 0.6)] = c2 * 0.7  # doors
        tiles = (np.floor((X - vx) / np.maximum(Y - vy, 1) * 3) + np.floor(300 / np.maximum(Y - vy, 1))) % 2
        img[floor] = c1 * 0.8
        img[floor & (tiles == 1)] = c1
        img[ceil] = c0 * 1.1
        lights = (np.abs(X - vx) < 0.4 * (vy - Y)) & (np.floor(200 / np.maximum(vy - Y, 1)) % 2 == 0)
        img[ceil & lights] = 0.97
        img[~floor & ~ceil & (dx <= 0)] = c0 * 0.75
    elif cam.scene == "shopfront":  # awning, shop window with reflections, paved sidewalk
        win = (Y > H * 0.18) & (Y < H * 0.58)
        img[win] = c1 * 0.35
        img[win & ((X + 0.6 * Y) % 45 < 7)] = c1 * 0.35 + 0.25
        img[win & (X % (W * 0.45) < 3)] = c0 * 0.5
        awn = (Y > H * 0.06) & (Y < H * 0.18)
        img[awn] = c2
        img[awn & (X % 16 < 8)] = 0.92
        walk = Y > H * 0.6
        img[walk] = 0.45 + 0.3 * c1
        img[walk & ((X % 26 < 1.5) | (Y % 18 < 1.5))] = 0.3 + 0.2 * c1
        img[Y > H * 0.93] = 0.35
    elif cam.scene == "crossing":  # a camera over a road: asphalt with zebra stripes
        img[:] = 0.22 + 0.15 * c0
        img[(Y > H * 0.12) & ((Y - H * 0.12) % (H * 0.16) < H * 0.08) & (np.abs(X - W / 2) < W * 0.7)] = 0.86
        img[Y < H * 0.12] = 0.5 + 0.3 * c1
    else:  # plaza: hedge, diagonal paving
        img[Y < H * 0.3] = c1 * np.array([0.5, 0.9, 0.4], np.float32)
        img[(Y < H * 0.3) & ((X * 0.7 + Y) % 11 < 3)] = c1 * np.array([0.3, 0.6, 0.25], np.float32)
        pave = Y >= H * 0.3
        img[pave] = 0.55 + 0.3 * c0
        img[pave & (((X + Y) % 30 < 2) | ((X - Y) % 30 < 2))] = 0.35 + 0.2 * c0
        img[(Y > H * 0.26) & (Y < H * 0.33)] = c2
    if cam.shadow:  # a building's shadow across the scene, fixed per camera
        img[(X * cam.light + Y * 0.8) > H * (0.5 + 0.3 * cam.light)] *= cam.shadow


def _box_x(img, n):
    """Box blur of length n along x (cumulative sums: one pass, any length)."""
    pad = np.pad(img, ((0, 0), (n // 2 + 1, n - n // 2)) + ((0, 0),) * (img.ndim - 2), mode="edge")
    c = np.cumsum(pad, axis=1, dtype=np.float32)
    return (c[:, n:n + img.shape[1]] - c[:, :img.shape[1]]) / n


def render_street_image(wk: Walker, cam: StreetCamera, rng, height=128, width=64,
                        occlusion_prob=0.25, crop_prob=None) -> np.ndarray:
    """One capture of `wk` by `cam` -> uint8 (height, width, 3)."""
    H, W = 2 * height, 2 * width
    cv = Canvas(H, W)
    _scene(cv, cam, rng.normal(0, 0.06) * W, rng.normal(0, 0.03) * H)
    fh = wk.height * H * rng.uniform(0.93, 1.05)
    cx, top = W / 2 + rng.normal(0, 0.05) * W, (H - fh) / 2 + rng.normal(0, 0.025) * H
    if rng.random() < (cam.crop_prob if crop_prob is None else crop_prob):  # loose or tight detector boxes
        k = rng.integers(3)
        if k == 0:
            top += rng.uniform(0.1, 0.22) * fh  # feet below the frame
        elif k == 1:
            cx += rng.choice([-1, 1]) * rng.uniform(0.22, 0.38) * W  # one side cut
        else:
            fh *= rng.uniform(1.12, 1.3)
            top = (H - fh) / 2 + rng.uniform(-0.08, 0.02) * fh  # head or feet cut
    # cast shadow under the feet, away from the light
    if b := cv._box(cx - 0.5 * fh, top + 0.93 * fh, cx + 0.5 * fh, top + fh):
        sl, X, Yb = b
        x, y = (X - cx + cam.light * 0.12 * fh) / (0.16 * fh), (Yb - top - 0.965 * fh) / (0.025 * fh)
        cv.img[sl][x * x + y * y <= 1] *= 0.55
    _walker(cv, wk, VIEWS[rng.integers(4)], cx, top, fh, rng)
    # light on garments: brighter at the top, darker at the flanks, a side lit by the camera's light
    body = cv.part > 0
    Yg, Xg = np.nonzero(body)
    u = np.clip((Xg + 0.5 - cx) / (0.2 * fh), -1, 1)
    cv.img[Yg, Xg] *= (1.12 - 0.3 * np.clip((Yg - top) / fh, 0, 1) + 0.15 * cam.light * u - 0.15 * u * u)[:, None]
    p, edge = cv.part, np.zeros_like(body)  # outlines where one part meets another or the scene
    dh, dv = p[:, 1:] != p[:, :-1], p[1:] != p[:-1]
    edge[:, 1:] |= dh
    edge[:, :-1] |= dh
    edge[1:] |= dv
    edge[:-1] |= dv
    cv.img[edge & body] *= 0.45
    if rng.random() < cam.blur_prob:  # the walker moved during the exposure; the scene did not
        n = int(rng.integers(4, 14))
        smear = _box_x(body.astype(np.float32), n) > 0.02
        cv.img[smear] = _box_x(cv.img, n)[smear]
    if rng.random() < occlusion_prob:
        k = rng.integers(4)
        col = _colour(rng, rng.integers(4))
        if k == 0:  # pole
            x0 = rng.uniform(0, W)
            cv.trap(0, H, x0, x0, W * 0.04, W * 0.04, dim(col, 0.4) + 0.3)
        elif k == 1:  # a car bonnet at the bottom
            cv.ellipse(rng.uniform(0, W), H * 1.05, W * 0.8, H * rng.uniform(0.15, 0.3), col)
        elif k == 2:  # a passer-by's back at one side
            cv.ellipse(rng.choice([-0.05, 1.05]) * W, rng.uniform(0.4, 0.7) * H, W * 0.28, H * 0.5, col)
        else:  # railing
            for y in (0.62, 0.78):
                cv.trap(H * y, H * y + 4, W / 2, W / 2, W, W, (0.55, 0.55, 0.58))
            for x in np.arange(rng.uniform(0, 20), W, 24):
                cv.trap(H * 0.62, H, x, x, 2, 2, (0.55, 0.55, 0.58))
    img = cv.img
    if cam.tilt:  # looking down: upper rows and the top of the frame are magnified
        v = (np.arange(H) + 0.5) / H
        rows = np.minimum((v ** (1 + cam.tilt) * H).astype(int), H - 1)
        sx = 1 + cam.tilt * (1 - v) * 1.2
        cols = np.clip((W / 2 + (np.arange(W) + 0.5 - W / 2)[None] / sx[:, None]).astype(int), 0, W - 1)
        img = img[rows[:, None], cols]
    img = img.reshape(height, 2, width, 2, 3).mean(axis=(1, 3))
    wb = np.array([1 + cam.temperature, 1 + cam.tint, 1 - cam.temperature], np.float32)
    img = np.clip(img * wb * cam.exposure * rng.uniform(0.85, 1.15), 0, 1) ** cam.gamma
    yy, xx = np.ogrid[0:height, 0:width]
    img *= (1 - cam.vignette * (((xx + 0.5) / width - 0.5) ** 2 + ((yy + 0.5) / height - 0.5) ** 2) * 2)[..., None]
    if cam.chroma:  # colour noise in 4x4 blocks, zero in luma
        n = rng.normal(0, cam.chroma, (height // 4 + 1, width // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)[:height, :width]
        img = img + n - n.mean(axis=2, keepdims=True)
    img = img + rng.normal(0, 0.012, img.shape)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    if cam.jpeg < 90:  # the camera's own compression: 8x8 blocks that the final save keeps
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=cam.jpeg)
        out = np.asarray(Image.open(buf).convert("RGB"))
    return out


def train_counts(p: StreetParams, rng) -> np.ndarray:
    """Images per train identity: quotas of P(n) ∝ (n + shift)^-a, shuffled over identities.

    Quotas (largest remainder) instead of independent draws keep the total the same for every seed,
    so runs on different seeds compare like with like.
    """
    n = np.arange(p.train_images_min, p.train_images_max + 1)
    w = (n + p.zipf_shift) ** -p.zipf_a
    q = w / w.sum() * p.num_train_ids
    k = np.floor(q).astype(int)
    k[np.argsort(k - q)[: p.num_train_ids - k.sum()]] += 1
    return rng.permutation(np.repeat(n, k))


def render_street(root: str | Path, params: StreetParams = StreetParams(), seed: int = 0) -> dict:
    """Write the street set under `root` in the Market-1501 layout; returns its summary."""
    p, root = params, Path(root)
    dirs = {d: root / d for d in SPLIT_DIRS}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
        for f in [*d.glob("*.jpg"), *d.glob("*.png")]:  # a rerun replaces, never mixes, renders
            f.unlink()
    scenes = np.random.default_rng([seed, 1]).permutation([SCENES[c % len(SCENES)] for c in range(p.num_cameras)])
    cams = [make_street_camera(np.random.default_rng([seed, 1, c]), str(scenes[c])) for c in range(p.num_cameras)]
    catalogue = make_catalogue(np.random.default_rng([seed, 2]))

    def write(split, pid, cam, k, wk, stream, crop_prob=None):
        r = np.random.default_rng([seed, 8, *stream, k])
        img = render_street_image(wk, cams[cam], r, p.height, p.width, p.occlusion_prob, crop_prob)
        Image.fromarray(img).save(dirs[split] / format_name(pid, cam, 1, 100 * k + 1, 1), quality=p.jpeg_quality)

    # each split draws its people from its own stream: resizing one split leaves the others' people alone
    counts = train_counts(p, np.random.default_rng([seed, 4]))
    cam_rng = np.random.default_rng([seed, 4, 1])
    for i in range(p.num_train_ids):
        wk = make_walker(np.random.default_rng([seed, 3, i]), catalogue, p.catalogue_prob)
        for k in range(int(counts[i])):
            write("bounding_box_train", i + 1, int(cam_rng.integers(p.num_cameras)), k, wk, (0, i))
    for j in range(p.num_test_ids):
        pid = p.num_train_ids + 1 + j
        wk = make_walker(np.random.default_rng([seed, 5, j]), catalogue, p.catalogue_prob)
        r = np.random.default_rng([seed, 6, j])
        # >= min_test_cameras cameras cycled over the images: the two queries come from two different
        # cameras and each has gallery images from other cameras
        n_cam = int(r.integers(min(p.min_test_cameras, p.num_cameras), p.num_cameras + 1))
        order = r.permutation(p.num_cameras)[:n_cam]
        for k in range(p.test_images_per_id):
            write("query" if k < 2 else "bounding_box_test", pid, int(order[k % n_cam]), k, wk, (1, j))
    r = np.random.default_rng([seed, 7])
    for j in range(p.num_distractors):  # pid 0000: strangers and bad detections (crops cut more often)
        wk = make_walker(np.random.default_rng([seed, 7, j]), catalogue, p.catalogue_prob)
        write("bounding_box_test", 0, int(r.integers(p.num_cameras)), j, wk, (2, j), crop_prob=0.5)
    summary = {"seed": seed, "params": asdict(p), "cameras": [c.scene for c in cams],
               "train_images_per_id": np.bincount(counts, minlength=p.train_images_max + 1).tolist(),
               **{d: len(list(dirs[d].glob("*.jpg"))) for d in SPLIT_DIRS}}
    (root / "street.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Render the street re-id set (Market-1501 layout) under ROOT.")
    ap.add_argument("root")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print(json.dumps(render_street(a.root, StreetParams(), a.seed), indent=1))


if __name__ == "__main__":
    main()
