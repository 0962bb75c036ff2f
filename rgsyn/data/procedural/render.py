"""The embedded default dataset: procedural pedestrians written in the Market-1501 on-disk layout.

Identity lives in appearance: skin, hair, clothing colours drawn from continuous HSV with
realistic mass on greys/black/white, garment patterns, sleeve and leg styles, body proportions and
accessories. Nuisance lives in the capture: each camera has its own scene, colour cast, exposure and
sensor noise; each image has its own viewpoint (front/back/side hides or reveals a logo or a backpack),
walking pose, scale, position, clutter and occluders. Train identities are few and long-tailed
(1–8 images), test identities are disjoint, so a model trained on the real split alone generalises
imperfectly — the gap the synthetic data is meant to close.

Everything is a pure function of (seed, pid, image index): rendering twice gives identical files.
Shapes are drawn at 2x and box-filtered down, which anti-aliases edges.
"""
from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rgsyn.config import EmbeddedParams
from rgsyn.data.market1501 import format_name

VIEWS = ("front", "back", "left", "right")


@dataclass(frozen=True)
class Identity:
    skin: tuple
    hair: tuple
    long_hair: bool
    upper: tuple
    upper2: tuple
    pattern: str  # solid | hstripes | vstripes | split | logo
    long_sleeves: bool
    lower: tuple
    lower_style: str  # trousers | shorts | skirt
    shoes: tuple
    height: float  # fraction of the frame
    build: float  # width multiplier
    accessory: str  # none | backpack | shoulderbag | hat
    acc_color: tuple


def _cloth_color(rng) -> tuple:
    """Clothes are often black/grey/white/navy; the rest spans the hue circle."""
    u = rng.random()
    if u < 0.3:
        v = rng.choice([0.12, 0.35, 0.6, 0.9]) + rng.normal(0, 0.05)
        return tuple(np.clip([v, v, v] + rng.normal(0, 0.02, 3), 0, 1))
    h, s, v = rng.random(), rng.uniform(0.35, 0.95), rng.uniform(0.3, 0.95)
    return colorsys.hsv_to_rgb(h, s, v)


def make_identity(rng: np.random.Generator) -> Identity:
    skins = [(0.96, 0.80, 0.69), (0.87, 0.67, 0.52), (0.67, 0.46, 0.33), (0.42, 0.28, 0.20)]
    hairs = [(0.08, 0.06, 0.05), (0.30, 0.18, 0.10), (0.62, 0.45, 0.25), (0.75, 0.72, 0.70), (0.55, 0.2, 0.1)]
    return Identity(
        skin=skins[rng.integers(len(skins))],
        hair=hairs[rng.integers(len(hairs))],
        long_hair=bool(rng.random() < 0.35),
        upper=_cloth_color(rng),
        upper2=_cloth_color(rng),
        pattern=str(rng.choice(["solid", "solid", "hstripes", "vstripes", "split", "logo"])),
        long_sleeves=bool(rng.random() < 0.6),
        lower=_cloth_color(rng),
        lower_style=str(rng.choice(["trousers", "trousers", "trousers", "shorts", "skirt"])),
        shoes=_cloth_color(rng),
        height=float(rng.uniform(0.74, 0.9)),
        build=float(rng.uniform(0.8, 1.2)),
        accessory=str(rng.choice(["none", "none", "backpack", "shoulderbag", "hat"])),
        acc_color=_cloth_color(rng),
    )


@dataclass(frozen=True)
class Camera:
    wall: tuple
    floor: tuple
    horizon: float
    cast: tuple  # per-channel gain
    exposure: float
    noise: float
    blur: bool


def make_camera(rng: np.random.Generator) -> Camera:
    cast = np.clip(1 + rng.normal(0, 0.12, 3), 0.75, 1.25)
    return Camera(wall=tuple(rng.uniform(0.25, 0.85, 3)), floor=tuple(rng.uniform(0.2, 0.7, 3)),
                  horizon=float(rng.uniform(0.45, 0.75)), cast=tuple(cast),
                  exposure=float(rng.uniform(0.75, 1.15)), noise=float(rng.uniform(0.5, 1.5)),
                  blur=bool(rng.random() < 0.5))


class Canvas:
    """An RGB float image with masked painting primitives (coordinates in pixels of this canvas)."""

    def __init__(self, h: int, w: int):
        self.img = np.zeros((h, w, 3), np.float32)  # (H, W, 3)
        self.y, self.x = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5

    def paint(self, mask, color):
        self.img[mask] = color

    def rect(self, x0, y0, x1, y1, color):
        self.paint((self.x >= x0) & (self.x < x1) & (self.y >= y0) & (self.y < y1), color)

    def ellipse(self, cx, cy, rx, ry, color, top_only=None):
        m = ((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2 <= 1
        if top_only is not None:
            m &= self.y < top_only
        self.paint(m, color)

    def capsule(self, p0, p1, r, color):
        """Thick segment: limbs that swing with the walking pose."""
        (x0, y0), (x1, y1) = p0, p1
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((self.x - x0) * dx + (self.y - y0) * dy) / (dx * dx + dy * dy + 1e-6), 0, 1)
        self.paint((self.x - x0 - t * dx) ** 2 + (self.y - y0 - t * dy) ** 2 <= r * r, color)


def _background(cv: Canvas, cam: Camera, rng):
    h, w = cv.img.shape[:2]
    hz = cam.horizon * h
    grad = np.linspace(0.9, 1.1, h, dtype=np.float32)[:, None, None]
    cv.img[:] = np.where((cv.y < hz)[..., None], np.asarray(cam.wall, np.float32), np.asarray(cam.floor, np.float32))
    cv.img *= grad
    for _ in range(rng.integers(1, 4)):  # clutter: doors, signs, benches
        x0, y0 = rng.uniform(0, w), rng.uniform(0, hz)
        cv.rect(x0, y0, x0 + rng.uniform(2, w / 2), y0 + rng.uniform(4, h / 2),
                np.clip(np.asarray(cam.wall) * rng.uniform(0.6, 1.3, 3), 0, 1))


def _person(cv: Canvas, ident: Identity, view: str, rng):
    h, w = cv.img.shape[:2]
    fh = ident.height * h * rng.uniform(0.92, 1.06)  # figure height in pixels
    cx = w / 2 + rng.normal(0, 0.06) * w
    top = (h - fh) / 2 + rng.normal(0, 0.03) * h
    side = view in ("left", "right")
    sgn = 1 if view == "right" else -1
    bw = 0.12 * fh * ident.build * (0.7 if side else 1.0)  # torso half-width
    Y = lambda v: top + v * fh  # noqa: E731 — figure-relative height
    phase = rng.uniform(-1, 1)  # walking: legs and arms swing in opposite phase
    swing = (0.12 if side else 0.05) * fh * phase
    limb = 0.035 * fh * ident.build

    # legs and shoes
    leg_col = ident.lower if ident.lower_style == "trousers" else ident.skin
    for s in (-1, 1):
        hip = (cx + s * bw * 0.45, Y(0.52))
        foot = (cx + s * bw * 0.45 + s * swing, Y(0.94))
        cv.capsule(hip, foot, limb * 1.1, leg_col)
        if ident.lower_style == "shorts":
            knee = (hip[0] + 0.4 * (foot[0] - hip[0]), Y(0.68))
            cv.capsule(hip, knee, limb * 1.25, ident.lower)
        cv.ellipse(foot[0] + (sgn * limb if side else 0), Y(0.96), limb * 1.5, 0.025 * fh, ident.shoes)
    if ident.lower_style == "skirt":
        for yy in np.arange(Y(0.5), Y(0.74), 0.5):
            half = bw * (0.8 + 0.6 * (yy - Y(0.5)) / (0.24 * fh))
            cv.rect(cx - half, yy, cx + half, yy + 0.5, ident.lower)
    # backpack behind the body when seen from the side or front
    if ident.accessory == "backpack" and view != "back":
        if side:
            cv.rect(cx - sgn * bw * 1.5, Y(0.2), cx - sgn * bw * 0.4, Y(0.46), ident.acc_color)
    # torso with pattern
    cv.rect(cx - bw, Y(0.18), cx + bw, Y(0.53), ident.upper)
    inside = (cv.x >= cx - bw) & (cv.x < cx + bw) & (cv.y >= Y(0.18)) & (cv.y < Y(0.53))
    if ident.pattern == "hstripes":
        cv.paint(inside & (((cv.y - Y(0.18)) // max(0.05 * fh, 1)) % 2 == 1), ident.upper2)
    elif ident.pattern == "vstripes":
        cv.paint(inside & (((cv.x - cx) // max(0.06 * fh, 1)) % 2 == 1), ident.upper2)
    elif ident.pattern == "split":
        cv.paint(inside & (cv.y >= Y(0.36)), ident.upper2)
    elif ident.pattern == "logo" and view == "front":
        cv.rect(cx - bw * 0.4, Y(0.25), cx + bw * 0.4, Y(0.37), ident.upper2)
    if ident.accessory == "backpack":
        if view == "back":
            cv.rect(cx - bw * 0.8, Y(0.2), cx + bw * 0.8, Y(0.46), ident.acc_color)
        elif view == "front":
            for s in (-1, 1):
                cv.rect(cx + s * bw * 0.6 - 0.015 * fh, Y(0.18), cx + s * bw * 0.6 + 0.015 * fh, Y(0.4), ident.acc_color)
    # arms
    arm_col = ident.upper if ident.long_sleeves else ident.skin
    for s in ((-1, 1) if not side else (sgn,)):
        sh = (cx + s * (bw + 0.8 * limb) * (1.0 if not side else 0.1), Y(0.21))
        hand = (sh[0] - (swing if side else s * -0.02 * fh), Y(0.5))
        cv.capsule(sh, hand, limb, arm_col)
        if not ident.long_sleeves:
            cv.capsule(sh, (sh[0] + 0.3 * (hand[0] - sh[0]), Y(0.29)), limb * 1.1, ident.upper)
    if ident.accessory == "shoulderbag":
        s = sgn if side else 1
        cv.rect(cx + s * bw * 0.7, Y(0.42), cx + s * bw * 1.5, Y(0.55), ident.acc_color)
    # head, hair, hat
    hx, hy, hr = cx + (sgn * 0.02 * fh if side else 0), Y(0.1), 0.075 * fh
    cv.rect(cx - 0.03 * fh, Y(0.15), cx + 0.03 * fh, Y(0.19), ident.skin)  # neck
    if ident.long_hair:
        cv.rect(hx - hr * 1.05, hy, hx + hr * 1.05, Y(0.25 if view == "back" else 0.2), ident.hair)
    cv.ellipse(hx, hy, hr * 0.85, hr, ident.hair if view == "back" else ident.skin)
    cv.ellipse(hx, hy, hr * 0.9, hr * 1.05, ident.hair, top_only=hy - 0.35 * hr)
    if ident.accessory == "hat":
        cv.ellipse(hx, hy - 0.5 * hr, hr * 0.95, hr * 0.65, ident.acc_color, top_only=hy - 0.3 * hr)
        cv.rect(hx - hr * 1.3, hy - 0.45 * hr, hx + hr * 1.3, hy - 0.25 * hr, ident.acc_color)


def render_image(ident: Identity, cam: Camera, rng: np.random.Generator, height: int, width: int,
                 occlusion_prob: float, noise_std: float) -> np.ndarray:
    """One capture of `ident` by `cam` -> uint8 (H, W, 3)."""
    cv = Canvas(2 * height, 2 * width)
    _background(cv, cam, rng)
    _person(cv, ident, VIEWS[rng.integers(len(VIEWS))], rng)
    if rng.random() < occlusion_prob:  # a passer-by, pole or car edge covering one side
        h, w = cv.img.shape[:2]
        x0 = rng.choice([rng.uniform(-0.2, 0.1), rng.uniform(0.6, 0.9)]) * w
        y0 = rng.uniform(0.3, 0.8) * h
        cv.rect(x0, y0, x0 + rng.uniform(0.25, 0.4) * w, h, rng.uniform(0.1, 0.9, 3))
    img = cv.img.reshape(height, 2, width, 2, 3).mean(axis=(1, 3))  # (H, W, 3), anti-aliased
    if cam.blur:
        img = 0.5 * img + 0.125 * (np.roll(img, 1, 0) + np.roll(img, -1, 0) + np.roll(img, 1, 1) + np.roll(img, -1, 1))
    img = img * np.asarray(cam.cast, np.float32) * cam.exposure * rng.uniform(0.85, 1.15)
    img = img + rng.normal(0, noise_std * cam.noise, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _images_per_train_id(p: EmbeddedParams, rng) -> np.ndarray:
    """Long tail: P(n) ∝ n^-a on [min, max]; most identities get one or two images."""
    n = np.arange(p.train_images_min, p.train_images_max + 1)
    w = n.astype(float) ** -p.zipf_a
    return rng.choice(n, size=p.num_train_ids, p=w / w.sum())


def render_dataset(root: str | Path, p: EmbeddedParams, seed: int) -> dict:
    """Write the embedded dataset under `root` in the Market-1501 layout; returns its summary."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    cams = [make_camera(np.random.default_rng([seed, 7, c])) for c in range(p.num_cameras)]
    counts = _images_per_train_id(p, rng)
    n_ids = p.num_train_ids + p.num_test_ids
    dirs = {s: root / s for s in ("bounding_box_train", "query", "bounding_box_test")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
        for f in d.glob("*.jpg"):  # a rerun replaces, never mixes, renders
            f.unlink()

    def write(split, pid, cam, k, ident, label=None):
        r = np.random.default_rng([seed, pid if label is None else label, k, 1])
        img = render_image(ident, cams[cam], r, p.height, p.width, p.occlusion_prob, p.noise_std)
        Image.fromarray(img).save(dirs[split] / format_name(pid, cam, 1, 100 * k + 1, 1), quality=95)

    for i in range(n_ids):
        pid = i + 1
        ident = make_identity(np.random.default_rng([seed, pid]))
        if i < p.num_train_ids:
            for k in range(int(counts[i])):
                write("bounding_box_train", pid, int(rng.integers(p.num_cameras)), k, ident)
            continue
        # test identity: every image from a camera, cycling a random camera order so each id is
        # seen by >= 2 cameras; one query from each of the first two cameras, the rest is gallery
        order = rng.permutation(p.num_cameras)
        for k in range(p.test_images_per_id):
            cam = int(order[k % p.num_cameras])
            write("query" if k < 2 else "bounding_box_test", pid, cam, k, ident)
    for j in range(p.num_distractors):  # pid 0000: people no query looks for
        ident = make_identity(np.random.default_rng([seed, 10_000 + j]))
        write("bounding_box_test", 0, int(rng.integers(p.num_cameras)), j, ident, label=10_000 + j)
    summary = {"seed": seed, "train_images_per_id": np.bincount(counts).tolist(),
               **{s: len(list(d.glob("*.jpg"))) for s, d in dirs.items()}}
    (root / "embedded.json").write_text(json.dumps(summary, indent=1))
    return summary
