"""Time-reversal-pairs benchmark: procedurally rendered action clips written as real H.264 files.

Classes come in pairs ``(a, b)`` where class ``b`` is class ``a`` played backwards (moving right / moving left,
rotating clockwise / counter-clockwise, approaching / receding, ...). Only the *forward* action of a pair is ever
rendered; a clip of the backward class is a freshly rendered forward clip with its frame order reversed. So the
multiset of frames of a ``b`` clip has exactly the distribution of the multiset of frames of an ``a`` clip, and a
frame-order-invariant model (TSN: average of per-frame predictions) is at pair chance by construction. A temporal
model is not.

Every nuisance is drawn with a **time-symmetric** distribution (its law is unchanged when time is reversed), so that
at any fixed frame index the only thing that differs between the two classes of a pair is the action itself:

* action start ``s ~ U(0, slack)`` (start slack and end slack are exchangeable), duration a random fraction of the
  clip, a speed profile ``f`` with ``f(1-u) = 1 - f(u)`` (linear or smoothstep);
* hand-held camera: a stationary Gaussian AR(1) walk (a stationary Gaussian process is time reversible) + i.i.d.
  shake per frame + a constant-velocity pan parametrised around the middle frame with a symmetric velocity, + AR(1)
  roll;
* 1-3 distractors: constant velocity parametrised around the middle frame, bouncing off the frame edges, constant
  spin, both symmetric in sign;
* exposure: slow sinusoidal gain drift with a uniformly random phase, i.i.d. Gaussian noise per frame.

Longer videos (the FASTER long-video benchmark, ``training.data.long_video``) are continuous scenes from
:func:`render_scene`: the same renderer over more frames, the action inside a window, the main object absent outside
it (the frames there are those of the scene's idle twin).

Scenes use real photos from ``skimage.data`` (loaded offline, once per process) for backgrounds and object
textures. Randomness of a clip derives only from ``(seed, split, label, index)`` through ``np.random.SeedSequence``,
so the output does not depend on the number of worker processes.

CLI::

    python -m training.data.synthetic --preset tiny|small|full --out DIR --seed S [--workers N] [--overwrite]

Layout written (atomically: into a hidden sibling ``.DIR.tmp-*`` directory, then renamed)::

    DIR/videos/{train,val}/{label_name}_{index:06d}.mp4   H.264 (libx264, yuv420p), constant fps
    DIR/train.csv, DIR/val.csv                           header ``path,label``; path relative to DIR
    DIR/labels.txt                                       line i = name of label i
    DIR/meta.json                                        generator version, config, seed, pairs, hflip_map, counts
    DIR/annotations.npz                                  per split, per clip, per frame: x, y, scale, opacity, ...
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.data.writer import (dataset_output, generator_cli, meta_head, run_jobs,
                                  split_arrays, start, video_relpath, write_split, write_video, x264_needs_plain_c)

__all__ = [
    "GENERATOR_NAME",
    "GENERATOR_VERSION",
    "CLASSES",
    "PAIRS",
    "HFLIP_MAP",
    "FORWARD_ACTIONS",
    "ANNOTATION_KEYS",
    "SPLITS",
    "SyntheticConfig",
    "PRESETS",
    "clip_seed",
    "partner",
    "is_reversed_class",
    "render_clip",
    "SCENE_ANNOTATION_KEYS",
    "render_scene",
    "photo_pool",
    "scene_work",
    "worker_init",
    "generate",
    "main",
]

GENERATOR_NAME = "training.data.synthetic"
GENERATOR_VERSION = "1.0.0"

# Class i and its reversal partner are adjacent: (0, 1), (2, 3), ... The first of each pair is the rendered one.
CLASSES: tuple[str, ...] = (
    "moving_right", "moving_left",
    "moving_down", "moving_up",
    "rotating_cw", "rotating_ccw",
    "orbiting_cw", "orbiting_ccw",
    "approaching", "receding",
    "appearing", "disappearing",
    "covering", "uncovering",
    "stretching", "squeezing",
)
PAIRS: tuple[tuple[int, int], ...] = tuple((i, i + 1) for i in range(0, len(CLASSES), 2))
# The forward action rendered for each pair (index = pair index).
FORWARD_ACTIONS: tuple[str, ...] = ("move_x", "move_y", "rotate", "orbit", "approach", "appear", "cover", "stretch")


def _hflip_map() -> tuple[int, ...]:
    swaps = {("moving_right", "moving_left"), ("rotating_cw", "rotating_ccw"), ("orbiting_cw", "orbiting_ccw")}
    index = {name: i for i, name in enumerate(CLASSES)}
    out = list(range(len(CLASSES)))
    for a, b in swaps:
        out[index[a]], out[index[b]] = index[b], index[a]
    return tuple(out)


# Label after a horizontal flip of the clip. Vertical motion, scale, opacity, covering (the occluder comes from a
# random side, symmetric under a flip) and stretching (random axis) are unchanged by a flip.
HFLIP_MAP: tuple[int, ...] = _hflip_map()

SPLITS: tuple[str, ...] = ("train", "val")
_SPLIT_KEY = {"train": 0, "val": 1}

# Per-frame annotations returned by render_clip (and stored in annotations.npz), all float32 of length T:
#   x, y       main object centre in frame pixel coordinates (after the camera)
#   scale      object diameter (of its circumscribed circle, times sqrt of the stretch area factor) / min(W, H)
#   opacity    object opacity in [0, 1] (fading)
#   visible    fraction of the object's area that is inside the frame and not hidden by layers in front of it
#   angle      object rotation in degrees, clockwise on screen (image y axis points down)
#   aspect     stretch ratio along the stretch axis (1 = undeformed)
#   world_x/y  object centre in scene coordinates (before the camera)
#   cam_x/y    camera offset in pixels;  cam_roll  camera roll in degrees;  gain  exposure gain
ANNOTATION_KEYS: tuple[str, ...] = (
    "x", "y", "scale", "opacity", "visible", "angle", "aspect", "world_x", "world_y", "cam_x", "cam_y", "cam_roll",
    "gain",
)


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that defines a generated dataset (besides the seed). Sizes in pixels, ranges as (low, high)."""

    name: str
    width: int
    height: int
    frames: int
    fps: int
    train_per_class: int
    val_per_class: int
    # encoding
    crf: int = 20
    x264_preset: str = "veryfast"
    # action timing: duration as a fraction of the clip; the rest is still frames split U(0, slack) before / after
    action_frac: tuple[float, float] = (0.5, 1.0)
    # scene
    world_margin: float = 0.12  # background extends this fraction of the frame beyond each edge
    distractors: tuple[int, int] = (1, 3)
    # camera (fractions of min(W, H)); AR(1) walk std, i.i.d. shake std (max), total pan over the clip (max)
    camera_walk: float = 0.025
    camera_shake: float = 0.006
    camera_pan: float = 0.08
    camera_roll_deg: float = 1.5
    # photometry
    noise_sigma: tuple[float, float] = (1.0, 6.0)  # per-clip Gaussian noise sigma, in 0..255 units
    gain_drift: float = 0.12  # max relative amplitude of the slow exposure oscillation

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(f"width/height must be even and >= 16 (H.264 yuv420p), got {self.width}x{self.height}")
        if self.frames < 4:
            raise ValueError(f"frames must be >= 4, got {self.frames}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.train_per_class < 0 or self.val_per_class < 0:
            raise ValueError("train_per_class / val_per_class must be >= 0")
        lo, hi = self.action_frac
        if not 0.05 <= lo <= hi <= 1.0:
            raise ValueError(f"action_frac must satisfy 0.05 <= low <= high <= 1, got {self.action_frac}")
        if not 0 <= self.distractors[0] <= self.distractors[1]:
            raise ValueError(f"bad distractors range {self.distractors}")

    def per_class(self, split: str) -> int:
        return {"train": self.train_per_class, "val": self.val_per_class}[split]

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


PRESETS: dict[str, SyntheticConfig] = {
    # Widths are multiples of 128: x264's SIMD encoder is only run-to-run deterministic there (see writer.write_mp4).
    # CI: 16 classes x (4 + 2) clips x 16 frames at 128x128; a few seconds on 2 cores.
    "tiny": SyntheticConfig(name="tiny", width=128, height=128, frames=16, fps=15, train_per_class=4, val_per_class=2),
    # CPU experiments: 2400 clips x 32 frames at 128x128.
    "small": SyntheticConfig(name="small", width=128, height=128, frames=32, fps=15, train_per_class=120,
                             val_per_class=30),
    # GPU scale: 14400 clips x 48 frames at 256x256.
    "full": SyntheticConfig(name="full", width=256, height=256, frames=48, fps=15, train_per_class=800,
                            val_per_class=100),
}


# --------------------------------------------------------------------------------------------------------------------
# seeds and labels
# --------------------------------------------------------------------------------------------------------------------
def clip_seed(seed: int, split: str, label: int, index: int) -> np.random.SeedSequence:
    """The only source of randomness of one dataset clip: a function of (seed, split, label, index) alone."""
    if split not in _SPLIT_KEY:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.SeedSequence(int(seed), spawn_key=(_SPLIT_KEY[split], int(label), int(index)))


def partner(label: int) -> int:
    """The class that is ``label`` played backwards."""
    _check_label(label)
    return label ^ 1


def is_reversed_class(label: int) -> bool:
    """True for the second class of a pair, whose clips are rendered forward and then time-reversed."""
    _check_label(label)
    return bool(label % 2)


def _check_label(label: int) -> None:
    if not (isinstance(label, (int, np.integer)) and 0 <= label < len(CLASSES)):
        raise ValueError(f"label must be an int in [0, {len(CLASSES)}), got {label!r}")


def _child(ss: np.random.SeedSequence, k: int) -> np.random.Generator:
    # Like ss.spawn() but stateless: calling render_clip twice with the same SeedSequence object gives the same clip.
    return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + (k,)))


# --------------------------------------------------------------------------------------------------------------------
# photo pool
# --------------------------------------------------------------------------------------------------------------------
_COLOR_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                 "stereo_motorcycle")
_GRAY_PHOTOS = ("brick", "grass", "gravel", "camera", "moon", "coins", "clock", "cell", "page")
_BACKGROUND_ONLY = ("hubble_deep_field",)  # mostly black: a poor object texture


@dataclass(frozen=True)
class _Photo:
    name: str
    image: np.ndarray  # float32 (H, W, 3) in [0, 1]
    gray: bool


@functools.lru_cache(maxsize=1)
def photo_pool() -> tuple[_Photo, ...]:
    """Real photos from ``skimage.data`` that ship with scikit-image (no network), as float32 RGB, max side 512.

    Loaded once per process (cached). The order is fixed, so a seed picks the same photos everywhere.
    """
    try:
        import skimage.data as skd
    except ImportError as exc:  # pragma: no cover - the train extra brings scikit-image
        raise ImportError("the synthetic dataset needs scikit-image for its photos (pip install scikit-image)") from exc
    import cv2

    photos = []
    for name, gray in [(n, False) for n in _COLOR_PHOTOS] + [(n, True) for n in _GRAY_PHOTOS]:
        try:
            img = getattr(skd, name)()
        except Exception:  # a photo this scikit-image version does not ship offline: skip it
            continue
        if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
            img = img[0]
        img = np.asarray(img)
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if name == "retina":  # drop the black corners around the fundus
            h, w = img.shape[:2]
            img = img[int(0.22 * h):int(0.78 * h), int(0.22 * w):int(0.78 * w)]
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = img[:, :, :3].astype(np.float32) / 255.0
        h, w = img.shape[:2]
        f = 512.0 / max(h, w)
        if f < 1.0:
            img = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        photos.append(_Photo(name, np.ascontiguousarray(img), gray))
    if len(photos) < 4:
        raise RuntimeError(f"only {len(photos)} skimage.data photos could be loaded offline; need at least 4")
    return tuple(photos)


def _photo_crop(rng: np.random.Generator, photo: _Photo, out_w: int, out_h: int,
                frac: tuple[float, float] = (0.35, 0.9)) -> np.ndarray:
    """A random crop of a photo resized to (out_h, out_w, 3) float32; random mirror; grayscale ones get a tint."""
    import cv2

    img = photo.image
    h, w = img.shape[:2]
    aspect = out_w / out_h
    side = rng.uniform(*frac) * min(h, w / aspect)
    ch, cw = max(8, int(side)), max(8, int(side * aspect))
    ch, cw = min(ch, h), min(cw, w)
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    crop = img[y0:y0 + ch, x0:x0 + cw]
    interp = cv2.INTER_AREA if cw > out_w else cv2.INTER_LINEAR
    out = cv2.resize(crop, (out_w, out_h), interpolation=interp)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if photo.gray:
        tint = rng.uniform(0.35, 1.0, size=3).astype(np.float32)
        tint /= tint.max()
        out = out * (0.25 + 0.75 * tint)
    return np.ascontiguousarray(out, dtype=np.float32)


# --------------------------------------------------------------------------------------------------------------------
# shapes and sprites
# --------------------------------------------------------------------------------------------------------------------
# All shapes lack rotational symmetry (a rotation is visible); chiral ones are mirrored at random so that the shape
# distribution is invariant under a horizontal flip.
_SHAPES: dict[str, list[tuple[float, float]]] = {
    "arrow": [(-1, -0.3), (0.2, -0.3), (0.2, -0.75), (1, 0), (0.2, 0.75), (0.2, 0.3), (-1, 0.3)],
    "L": [(-0.7, -1), (-0.15, -1), (-0.15, 0.45), (0.8, 0.45), (0.8, 1), (-0.7, 1)],
    "T": [(-1, -1), (1, -1), (1, -0.45), (0.3, -0.45), (0.3, 1), (-0.3, 1), (-0.3, -0.45), (-1, -0.45)],
    "F": [(-0.5, -1), (0.6, -1), (0.6, -0.6), (-0.1, -0.6), (-0.1, -0.15), (0.4, -0.15), (0.4, 0.25), (-0.1, 0.25),
          (-0.1, 1), (-0.5, 1)],
    "flag": [(-0.7, -1), (0.8, -0.55), (-0.4, -0.1), (-0.4, 1), (-0.7, 1)],
    "triangle": [(1, 0), (-0.8, -0.55), (-0.8, 0.55)],
}
_SHAPE_KINDS = tuple(_SHAPES) + ("pacman", "irregular")


def _polygon(rng: np.random.Generator) -> np.ndarray:
    """A random asymmetric polygon in unit coordinates: area centroid at 0, max radius 1."""
    kind = _SHAPE_KINDS[int(rng.integers(len(_SHAPE_KINDS)))]
    if kind == "pacman":
        mouth = rng.uniform(0.35, 0.7)
        a = np.linspace(mouth, 2 * np.pi - mouth, 24)
        pts = np.concatenate([[[0.0, 0.0]], np.stack([np.cos(a), np.sin(a)], 1)])
    elif kind == "irregular":
        n = int(rng.integers(5, 10))
        a = (np.arange(n) + rng.uniform(0.15, 0.85, n)) * (2 * np.pi / n)
        r = rng.uniform(0.4, 1.0, n)
        r[int(rng.integers(n))] = 1.0  # one long spike keeps it clearly asymmetric
        pts = np.stack([r * np.cos(a), r * np.sin(a)], 1)
    else:
        pts = np.asarray(_SHAPES[kind], dtype=np.float64)
        pts = pts + rng.uniform(-0.05, 0.05, pts.shape)
    if rng.random() < 0.5:
        pts = pts * np.array([-1.0, 1.0])
    # area centroid
    x, y = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = cross.sum() / 2
    if abs(area) > 1e-9:
        c = np.array([((x + x1) * cross).sum(), ((y + y1) * cross).sum()]) / (6 * area)
        pts = pts - c
    return pts / np.linalg.norm(pts, axis=1).max()


@dataclass
class _Sprite:
    levels: list[np.ndarray]  # premultiplied RGBA float32 mip levels, level l has size S / 2**l
    size: int  # S: the unit circle of the polygon maps to radius `radius` around (S-1)/2
    radius: float
    alpha_sum: float  # sum of alpha at level 0


def _make_sprite(rng: np.random.Generator, pool: Sequence[_Photo], size: int, *, polygon: np.ndarray | None = None,
                 edge: bool = True, exclude: int = -1) -> tuple[_Sprite, int]:
    """A textured shape: a crop of a photo cut by a polygon mask, with a thin contrasting edge.

    Returns (sprite, index of the photo used)."""
    import cv2

    size = int(max(8, size))
    candidates = [i for i, ph in enumerate(pool) if ph.name not in _BACKGROUND_ONLY and i != exclude]
    pidx = candidates[int(rng.integers(len(candidates)))]
    tex = _photo_crop(rng, pool[pidx], size, size, frac=(0.2, 0.6))
    # make the texture pop a little: contrast / brightness jitter
    mean = tex.mean(axis=(0, 1), keepdims=True)
    tex = np.clip((tex - mean) * rng.uniform(1.0, 1.5) + mean + rng.uniform(-0.1, 0.1), 0.0, 1.0)
    thick = max(1, round(size / 40)) if edge else 0
    radius = (size - 1) / 2 - thick - 0.5
    poly = _polygon(rng) if polygon is None else polygon
    pts = np.round((poly * radius + (size - 1) / 2) * 16).astype(np.int32)[None]
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, pts, 255, lineType=cv2.LINE_AA, shift=4)
    alpha = mask.astype(np.float32) / 255.0
    if edge:
        ring = np.zeros((size, size), np.uint8)
        cv2.polylines(ring, pts, True, 255, thickness=thick, lineType=cv2.LINE_AA, shift=4)
        e = ring.astype(np.float32)[:, :, None] / 255.0
        mode = rng.integers(3)
        if mode == 0:
            color = np.full(3, rng.uniform(0.85, 1.0))
        elif mode == 1:
            color = np.full(3, rng.uniform(0.0, 0.15))
        else:
            color = np.zeros(3)
            color[int(rng.integers(3))] = 1.0
            color = 0.2 + 0.8 * color
        tex = tex * (1 - e) + color.astype(np.float32) * e
        alpha = np.maximum(alpha, e[:, :, 0])
    rgba = np.concatenate([tex * alpha[:, :, None], alpha[:, :, None]], axis=2).astype(np.float32)
    levels = [rgba]
    while len(levels) < 4 and min(levels[-1].shape[:2]) >= 16:
        levels.append(cv2.pyrDown(levels[-1]))
    return _Sprite(levels, size, radius, float(alpha.sum())), pidx


def _rect_polygon(w: float, h: float) -> np.ndarray:
    """Unit-radius rectangle polygon with aspect w:h (for occluders)."""
    pts = np.array([(-w, -h), (w, -h), (w, h), (-w, h)], dtype=np.float64)
    return pts / np.linalg.norm(pts, axis=1).max()


# --------------------------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------------------------
def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])  # image coordinates (y down): increasing theta turns clockwise on screen


def _affine(lin: np.ndarray, t: Sequence[float]) -> np.ndarray:
    m = np.eye(3)
    m[:2, :2] = lin
    m[:2, 2] = t
    return m


def _sprite_to_scene(sprite: _Sprite, center: Sequence[float], diameter: float, theta: float,
                     stretch: float = 1.0, stretch_axis: float = 0.0) -> np.ndarray:
    """3x3 affine: sprite pixel -> scene coordinates. Unit polygon radius -> diameter / 2, rotated by theta and
    stretched by sqrt(stretch) along stretch_axis and 1/sqrt(stretch) across it (area preserved)."""
    k = math.sqrt(stretch)
    ra = _rot(stretch_axis)
    lin = (diameter / 2 / sprite.radius) * (ra @ np.diag([k, 1 / k]) @ ra.T @ _rot(theta))
    c0 = np.array([(sprite.size - 1) / 2] * 2)
    return _affine(lin, np.asarray(center, dtype=np.float64) - lin @ c0)


def _composite(out: np.ndarray, sprite: _Sprite, m: np.ndarray, opacity: float = 1.0):
    """Alpha-composite a sprite (premultiplied) into `out` (H, W, 3 float32) with the 3x3 affine m (sprite -> frame).

    Only the bounding box of the warped sprite is touched. Returns (x0, y0, alpha) with the layer's alpha in that box
    (before opacity), or None when the sprite is entirely outside the frame.
    """
    import cv2

    H, W = out.shape[:2]
    lin = m[:2, :2]
    scale = math.sqrt(abs(np.linalg.det(lin)))
    level = 0
    while level + 1 < len(sprite.levels) and scale * 2 ** (level + 1) <= 1.0:
        level += 1
    src = sprite.levels[level]
    ml = m.copy()
    ml[:2, :2] = lin * 2 ** level  # level-l pixel i is centred on level-0 pixel 2**l * i (pyrDown)
    h, w = src.shape[:2]
    corners = ml[:2] @ np.array([[0, w - 1, 0, w - 1], [0, 0, h - 1, h - 1], [1, 1, 1, 1]], dtype=np.float64)
    x0 = max(0, int(math.floor(corners[0].min())) - 1)
    y0 = max(0, int(math.floor(corners[1].min())) - 1)
    x1 = min(W, int(math.ceil(corners[0].max())) + 2)
    y1 = min(H, int(math.ceil(corners[1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    ml[0, 2] -= x0
    ml[1, 2] -= y0
    warped = cv2.warpAffine(src, ml[:2], (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    if warped.ndim == 2:  # 1x1 edge case
        warped = warped.reshape(y1 - y0, x1 - x0, 4)
    a = warped[:, :, 3:4]
    roi = out[y0:y1, x0:x1]
    if opacity >= 1.0:
        roi *= 1.0 - a
        roi += warped[:, :, :3]
    elif opacity > 0.0:
        roi *= 1.0 - opacity * a
        roi += opacity * warped[:, :, :3]
    return x0, y0, a[:, :, 0]


def _occlude(vis, layer) -> None:
    """Multiply the main object's visible alpha `vis` = (x0, y0, a) by (1 - alpha) of a layer composited after it."""
    if vis is None or layer is None:
        return
    vx, vy, va = vis
    lx, ly, la = layer
    x0, y0 = max(vx, lx), max(vy, ly)
    x1, y1 = min(vx + va.shape[1], lx + la.shape[1]), min(vy + va.shape[0], ly + la.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    va[y0 - vy:y1 - vy, x0 - vx:x1 - vx] *= 1.0 - la[y0 - ly:y1 - ly, x0 - lx:x1 - lx]


def _fold(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect positions into [lo, hi] (a constant-velocity point bouncing off both walls)."""
    span = hi - lo
    q = np.mod(p - lo, 2 * span)
    return lo + np.where(q > span, 2 * span - q, q)


def _ar1(rng: np.random.Generator, n: int, sigma: float, rho: float) -> np.ndarray:
    """Stationary Gaussian AR(1) (started from its stationary law, hence time reversible)."""
    x = np.empty(n)
    x[0] = rng.normal(0.0, sigma)
    e = rng.normal(0.0, sigma * math.sqrt(1 - rho * rho), n)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + e[t]
    return x


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed bank of 2**22 standard normals (same in every process). Per-frame sensor noise is a window of it at
    an i.i.d. random offset: drawing 1.5 M fresh normals per clip dominated the rendering time."""
    return np.random.default_rng(np.random.SeedSequence(0x5EED)).standard_normal(1 << 22, dtype=np.float32)


def _progress(rng: np.random.Generator, cfg: SyntheticConfig, frames: int | None = None) -> np.ndarray:
    """Action progress in [0, 1] per frame: still, then moving with a symmetric speed profile, then still.

    Duration D = frac * (T - 1), start s ~ U(0, T - 1 - D): start slack and end slack are exchangeable, and the
    profile satisfies f(1 - u) = 1 - f(u), so a reversed progress curve 1 - p(T-1-t) has the same law as p.
    T is ``frames`` (the action window of a scene), by default ``cfg.frames``.
    """
    T = cfg.frames if frames is None else frames
    D = rng.uniform(*cfg.action_frac) * (T - 1)
    s = rng.uniform(0.0, T - 1 - D)
    u = np.clip((np.arange(T) - s) / D, 0.0, 1.0)
    if rng.random() < 0.5:
        u = u * u * (3 - 2 * u)  # smoothstep
    return u


# --------------------------------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------------------------------
def _action_track(action: str, rng: np.random.Generator, p: np.ndarray, W: int, H: int) -> dict[str, np.ndarray]:
    """Per-frame state of the main object for a forward action with progress p (scene coordinates)."""
    T = len(p)
    L = min(W, H)
    one = np.ones(T)
    cx, cy = rng.uniform(0.35, 0.65) * W * one, rng.uniform(0.35, 0.65) * H * one
    diam = rng.uniform(0.3, 0.42) * L * one
    theta = rng.uniform(0, 2 * np.pi) * one
    opacity, stretch, axis = one.copy(), one.copy(), 0.0
    if action == "move_x":
        travel = rng.uniform(0.35, 0.55) * W
        mid = rng.uniform(0.2 * W + travel / 2, 0.8 * W - travel / 2)
        cx = mid + travel * (p - 0.5)
        cy = rng.uniform(0.3, 0.7) * H * one
    elif action == "move_y":
        travel = rng.uniform(0.35, 0.55) * H
        mid = rng.uniform(0.2 * H + travel / 2, 0.8 * H - travel / 2)
        cy = mid + travel * (p - 0.5)
        cx = rng.uniform(0.3, 0.7) * W * one
    elif action == "rotate":
        theta = theta + np.deg2rad(rng.uniform(120, 240)) * p
    elif action == "orbit":
        diam = rng.uniform(0.2, 0.28) * L * one
        r = rng.uniform(0.18, 0.26) * L
        a = rng.uniform(0, 2 * np.pi) + np.deg2rad(rng.uniform(150, 300)) * p
        ox, oy = rng.uniform(0.45, 0.55) * W, rng.uniform(0.45, 0.55) * H
        cx, cy = ox + r * np.cos(a), oy + r * np.sin(a)  # increasing a: clockwise on screen
    elif action == "approach":
        d0 = rng.uniform(0.14, 0.22) * L
        d1 = d0 * rng.uniform(2.2, 2.8)
        diam = d0 * (d1 / d0) ** p  # geometric: constant relative growth rate
    elif action == "appear":
        opacity = p.copy()
    elif action == "cover":
        pass  # the occluder moves, see _render_forward
    elif action == "stretch":
        diam = rng.uniform(0.28, 0.36) * L * one
        k = rng.uniform(1.8, 2.6)
        stretch = k ** p
        axis = rng.uniform(0, np.pi)
    else:  # pragma: no cover
        raise ValueError(action)
    return {"cx": cx, "cy": cy, "diam": diam, "theta": theta, "opacity": opacity, "stretch": stretch,
            "axis": np.full(T, axis)}


def _render_forward(pair: int, ss: np.random.SeedSequence, cfg: SyntheticConfig, frames: int | None = None,
                    window: tuple[int, int] | None = None, show: bool = True):
    """Render the forward action of ``pair``: (frames, annotations, progress).

    By default a clip of ``cfg.frames`` frames with the action over all of them. A scene (:func:`render_scene`) has
    ``frames`` frames and the main object (and the cover's occluder) only in ``window = (start, stop)``, where the
    action's progress runs; ``show=False`` draws the same random numbers but never composites them (the idle twin
    of the scene). Distractors move and spin per frame as in a ``cfg.frames`` clip; camera pan and exposure drift
    span the scene. With the defaults every step below is the clip's, so render_clip's output is unchanged.
    """
    import cv2

    pool = photo_pool()
    W, H, T = cfg.width, cfg.height, cfg.frames if frames is None else frames
    w0, w1 = (0, T) if window is None else window
    pace = cfg.frames  # distractor speed and spin are per frame of a cfg.frames clip
    L = min(W, H)
    mid = (T - 1) / 2
    tt = np.arange(T, dtype=np.float64)
    r_act, r_scene, r_cam, r_photo = (_child(ss, k) for k in range(4))

    # ---- main object and action: progress 0 before the window, the action inside it, 1 after it
    action = FORWARD_ACTIONS[pair]
    p = np.zeros(T)
    p[w0:w1] = _progress(r_act, cfg, w1 - w0)
    p[w1:] = 1.0
    present = np.zeros(T, bool)
    present[w0:w1] = show
    tr = _action_track(action, r_act, p, W, H)
    max_extent = float((tr["diam"] * np.sqrt(tr["stretch"])).max())
    main_sprite, main_photo = _make_sprite(r_act, pool, math.ceil(max_extent) + 2)
    occluder = None
    if action == "cover":
        d = float(tr["diam"][0])
        ow, oh = r_act.uniform(1.25, 1.6) * d, r_act.uniform(1.3, 1.8) * d  # along / across the motion
        direction = r_act.integers(4) * (np.pi / 2) + r_act.uniform(-0.25, 0.25)
        gap = r_act.uniform(0.0, 0.15) * d
        start = -(d / 2 + ow / 2 + gap)
        end = r_act.uniform(-1, 1) * (ow / 2 - d / 2) * 0.8  # still fully covering at the end
        along = start + (end - start) * p
        u = np.array([math.cos(direction), math.sin(direction)])
        odiam = math.hypot(ow, oh)
        osprite, _ = _make_sprite(r_act, pool, math.ceil(odiam) + 2, polygon=_rect_polygon(ow, oh),
                                  exclude=main_photo)
        ocenter = np.stack([tr["cx"] + along * u[0], tr["cy"] + along * u[1]], 1)
        occluder = (osprite, odiam, direction, ocenter)

    # ---- background: a photo crop larger than the frame so the camera can move
    mx, my = round(cfg.world_margin * W), round(cfg.world_margin * H)
    bg_photo = int(r_scene.integers(len(pool) - 1))
    bg_photo += bg_photo >= main_photo  # never the photo the main object is cut from
    bg = _photo_crop(r_scene, pool[bg_photo], W + 2 * mx, H + 2 * my, frac=(0.5, 1.0))
    bg_mean = bg.mean(axis=(0, 1), keepdims=True)
    bg = (bg - bg_mean) * r_scene.uniform(0.6, 1.0) + bg_mean
    blur = r_scene.uniform(0.0, 1.2) * L / 128
    if blur > 0.3:
        bg = cv2.GaussianBlur(bg, (0, 0), blur)
    bg = np.ascontiguousarray(bg, dtype=np.float32)
    bg_to_scene = _affine(np.eye(2), (-mx, -my))

    # ---- distractors: constant velocity around the middle frame, bouncing off the frame edges, constant spin
    distractors = []
    for _ in range(int(r_scene.integers(cfg.distractors[0], cfg.distractors[1] + 1))):
        dd = r_scene.uniform(0.12, 0.22) * L
        sprite, _ = _make_sprite(r_scene, pool, math.ceil(dd) + 2, edge=bool(r_scene.random() < 0.5))
        speed = r_scene.uniform(0.15, 0.8) * L / (pace - 1)
        heading = r_scene.uniform(0, 2 * np.pi)
        pm = (r_scene.uniform(0.1, 0.9) * W, r_scene.uniform(0.1, 0.9) * H)
        xs = _fold(pm[0] + speed * math.cos(heading) * (tt - mid), 0.05 * W, 0.95 * W)
        ys = _fold(pm[1] + speed * math.sin(heading) * (tt - mid), 0.05 * H, 0.95 * H)
        th = r_scene.uniform(0, 2 * np.pi) + r_scene.uniform(-1, 1) * (np.pi / 2) / (pace - 1) * (tt - mid)
        front = bool(r_scene.random() < 0.3)
        distractors.append((sprite, dd, xs, ys, th, front))

    # ---- camera: stationary AR(1) walk + i.i.d. shake + symmetric constant pan + AR(1) roll
    walk = cfg.camera_walk * L
    shake = r_cam.uniform(0.0, cfg.camera_shake) * L
    rho = r_cam.uniform(0.8, 0.95)
    cam = np.stack([_ar1(r_cam, T, walk, rho) for _ in range(2)], 1)
    cam += r_cam.normal(0.0, 1.0, (T, 2)) * shake
    pan = r_cam.uniform(-1, 1, 2) * (cfg.camera_pan * L / 2) * (1 if T > 1 else 0)
    cam += (tt[:, None] - mid) / max(mid, 1) * pan[None, :]
    roll = np.deg2rad(_ar1(r_cam, T, cfg.camera_roll_deg / 2, rho))
    c0 = np.array([(W - 1) / 2, (H - 1) / 2])

    # ---- photometry: per-clip white balance, slow gain drift with random phase, i.i.d. noise
    wb = (1.0 + r_photo.uniform(-0.08, 0.08, 3)).astype(np.float32)
    g0 = r_photo.uniform(0.85, 1.15)
    amp = r_photo.uniform(0.0, cfg.gain_drift)
    freq = r_photo.uniform(0.25, 1.0)
    phase = r_photo.uniform(0, 2 * np.pi)
    gain = g0 * (1 + amp * np.sin(2 * np.pi * freq * tt / max(T - 1, 1) + phase))
    sigma = np.float32(r_photo.uniform(*cfg.noise_sigma))
    bank = _noise_bank()
    n = H * W * 3
    fresh_noise = n > len(bank) // 4  # huge frames: draw fresh normals
    # Per-frame sensor noise: a window of a fixed bank of normals at an i.i.d. random offset (~20x faster than
    # drawing fresh normals, which dominated the rendering time).
    offsets = r_photo.integers(0, len(bank) - n, T) if not fresh_noise else np.zeros(T, np.int64)
    scale255 = [(np.float32(g * 255.0) * wb).astype(np.float32) for g in gain]

    frames = np.empty((T, H, W, 3), np.uint8)
    out = np.empty((H, W, 3), np.float32)
    ann = {k: np.zeros(T, np.float32) for k in ANNOTATION_KEYS}
    for t in range(T):
        camm = _affine(_rot(-roll[t]), c0) @ _affine(np.eye(2), -(c0 + cam[t]))  # scene -> frame
        out = cv2.warpAffine(bg, (camm @ bg_to_scene)[:2], (W, H), dst=out, flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
        for sprite, dd, xs, ys, th, front in distractors:
            if not front:
                _composite(out, sprite, camm @ _sprite_to_scene(sprite, (xs[t], ys[t]), dd, th[t]))
        mm = camm @ _sprite_to_scene(main_sprite, (tr["cx"][t], tr["cy"][t]), tr["diam"][t], tr["theta"][t],
                                     tr["stretch"][t], tr["axis"][t])
        vis = _composite(out, main_sprite, mm, float(tr["opacity"][t])) if present[t] else None
        if vis is not None:
            vis = (vis[0], vis[1], vis[2].copy())
        for sprite, dd, xs, ys, th, front in distractors:
            if front:
                _occlude(vis, _composite(out, sprite, camm @ _sprite_to_scene(sprite, (xs[t], ys[t]), dd, th[t])))
        if occluder is not None and present[t]:
            osprite, odiam, odir, ocenter = occluder
            _occlude(vis, _composite(out, osprite, camm @ _sprite_to_scene(osprite, ocenter[t], odiam, odir)))
        nominal = main_sprite.alpha_sum * abs(np.linalg.det(mm[:2, :2]))
        ann["visible"][t] = 0.0 if vis is None else min(1.0, float(vis[2].sum()) / max(nominal, 1e-9))
        fx, fy = (camm @ np.array([tr["cx"][t], tr["cy"][t], 1.0]))[:2]
        ann["x"][t], ann["y"][t] = fx, fy
        # photometry: exposure gain x white balance, noise, quantisation
        out *= scale255[t]
        if fresh_noise:
            out += sigma * r_photo.standard_normal((H, W, 3), dtype=np.float32)
        else:
            out += sigma * bank[offsets[t]:offsets[t] + n].reshape(H, W, 3)
        np.clip(out, 0.0, 255.0, out=out)
        frames[t] = np.rint(out)
    ann["scale"][:] = tr["diam"] / L
    ann["opacity"][:] = np.where(present, tr["opacity"], 0.0)
    ann["angle"][:] = np.rad2deg(tr["theta"])
    ann["aspect"][:] = tr["stretch"]
    ann["world_x"][:], ann["world_y"][:] = tr["cx"], tr["cy"]
    ann["cam_x"][:], ann["cam_y"][:] = cam[:, 0], cam[:, 1]
    ann["cam_roll"][:] = np.rad2deg(roll)
    ann["gain"][:] = gain

    return frames, ann, p


def render_clip(label: int, seed: int | np.random.SeedSequence,
                cfg: SyntheticConfig) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render one clip in memory (no encoding).

    Returns ``frames`` (T, H, W, 3) uint8 RGB and per-frame annotations (``ANNOTATION_KEYS``, float32 arrays of
    length T). The second class of a pair is the forward render reversed in time, so
    ``render_clip(partner(a), s, cfg)[0] == render_clip(a, s, cfg)[0][::-1]`` for a forward class ``a``.
    """
    _check_label(label)
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    frames, ann, _ = _render_forward(label // 2, ss, cfg)
    if is_reversed_class(label):
        frames = np.ascontiguousarray(frames[::-1])
        ann = {k: np.ascontiguousarray(v[::-1]) for k, v in ann.items()}
    return frames, ann


# Extra per-frame annotations of render_scene: the forward action's progress (0 -> 1; reversed, like the frames, for
# the second class of a pair) and whether the main object is in the scene at all (1) or absent (0).
SCENE_ANNOTATION_KEYS: tuple[str, ...] = ANNOTATION_KEYS + ("progress", "present")


def render_scene(label: int, seed: int | np.random.SeedSequence, cfg: SyntheticConfig, frames: int,
                 action: tuple[int, int], *, idle: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render one continuous scene of ``frames`` frames in which the action of ``label`` takes frames
    ``action = (start, stop)`` of the output. ``idle=True`` renders its idle twin: the same scene without the main
    object (every random draw is the same, the object and the cover's occluder are never composited).

    One background, camera and set of distractors for the whole scene; the main object (and the cover's occluder)
    is in it during the action window only, so outside the window the frames are exactly the idle twin's.
    Distractors move as in a ``cfg.frames`` clip; camera pan and exposure drift span the scene, so every nuisance
    keeps its time-symmetric law. The second class of a pair is the forward scene with the mirrored window reversed
    in time: ``render_scene(partner(a), s, cfg, n, (i, j))[0] == render_scene(a, s, cfg, n, (n - j, n - i))[0][::-1]``
    for a forward class ``a``, and ``render_scene(label, s, cfg, cfg.frames, (0, cfg.frames)) == render_clip(label,
    s, cfg)`` (frames and the ``ANNOTATION_KEYS``). Annotations: ``SCENE_ANNOTATION_KEYS``; where the object is
    absent, ``present``, ``opacity`` and ``visible`` are 0 and the pose keys hold where it would be.
    """
    _check_label(label)
    n = int(frames)
    start, stop = (int(v) for v in action)
    if not 0 <= start <= stop - 2 or stop > n:
        raise ValueError(f"action window must satisfy 0 <= start <= stop - 2 and stop <= frames={n}, got {action!r}")
    window = (n - stop, n - start) if is_reversed_class(label) else (start, stop)
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    out, ann, p = _render_forward(label // 2, ss, cfg, n, window, show=not idle)
    ann["progress"] = p.astype(np.float32)
    ann["present"] = np.zeros(n, np.float32)
    ann["present"][window[0]:window[1]] = 0.0 if idle else 1.0
    if is_reversed_class(label):
        out = np.ascontiguousarray(out[::-1])
        ann = {k: np.ascontiguousarray(v[::-1]) for k, v in ann.items()}
    return out, ann


# --------------------------------------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------------------------------
# dataset generation
# --------------------------------------------------------------------------------------------------------------------
def _clip_relpath(split: str, label: int, index: int) -> str:
    return video_relpath(split, CLASSES[label], index)


def _jobs(cfg: SyntheticConfig) -> list[tuple[str, int, int]]:
    return [(split, label, i) for split in SPLITS for label in range(len(CLASSES)) for i in range(cfg.per_class(split))]


_WORKER: dict[str, Any] = {}


def worker_init(root: str, cfg: SyntheticConfig, seed: int) -> None:
    """Set up a generator worker process (both benchmarks): one OpenCV thread, the photos and noise loaded once."""
    import cv2

    cv2.setNumThreads(1)
    _WORKER.update(root=root, cfg=cfg, seed=seed)
    photo_pool()
    _noise_bank()


def _work(job: tuple[str, int, int]) -> tuple[str, int, int, dict[str, np.ndarray]]:
    split, label, index = job
    cfg: SyntheticConfig = _WORKER["cfg"]
    frames, ann = render_clip(label, clip_seed(_WORKER["seed"], split, label, index), cfg)
    write_video(_WORKER["root"], _clip_relpath(split, label, index), frames, cfg)
    return split, label, index, ann


def scene_work(job: tuple[str, int, np.random.SeedSequence, int, tuple[int, int]],
               ) -> tuple[str, dict[str, np.ndarray]]:
    """Pool job of the long-video generator (``training.data.long_video``): ``render_scene(label, ss, cfg, frames,
    window)`` written to ``root/rel``; returns ``(rel, annotations)``. It lives here so that worker processes import
    this module only, not the long-video module (which brings torch for its dataset class: seconds per worker)."""
    rel, label, ss, frames, window = job
    cfg: SyntheticConfig = _WORKER["cfg"]
    out, ann = render_scene(label, ss, cfg, frames, window)
    write_video(_WORKER["root"], rel, out, cfg)
    return rel, ann


def generate(out: str | Path, preset: str | SyntheticConfig = "tiny", seed: int = 0, workers: int | None = None,
             overwrite: bool = False, progress: bool = True) -> Path:
    """Generate a dataset into ``out`` (see the module docstring) and return its path.

    Everything is written into a hidden sibling ``.OUT.tmp-*`` directory that replaces ``out`` only once complete; an
    interrupted run leaves ``out`` untouched. An existing complete dataset is replaced only with ``overwrite=True``;
    a non-empty directory that is not a dataset of this generator is never touched. The output does not depend on
    ``workers`` (default: the number of CPUs available to this process).
    """
    cfg, seed, out, workers = start(out, preset, seed, workers, overwrite, presets=PRESETS, cls=SyntheticConfig,
                                    generator=GENERATOR_NAME)

    jobs = _jobs(cfg)
    t0 = time.perf_counter()
    with dataset_output(out) as partial:
        for split in SPLITS:
            (partial / "videos" / split).mkdir(parents=True)
        results: dict[tuple[str, int, int], dict[str, np.ndarray]] = {}
        chunk = max(1, min(8, len(jobs) // (workers * 8)))
        for s, lab, i, ann in run_jobs(_work, jobs, workers=workers, initializer=worker_init,
                                       initargs=(str(partial), cfg, seed), chunksize=chunk,
                                       desc=f"synthetic[{cfg.name}]", unit="clip", show=progress):
            results[(s, lab, i)] = ann

        counts = {}
        for split in SPLITS:
            keys = [j for j in jobs if j[0] == split]
            counts[split] = len(keys)
            write_split(partial / f"{split}.csv", [(_clip_relpath(split, lab, i), lab) for _, lab, i in keys])
        (partial / "labels.txt").write_text("".join(c + "\n" for c in CLASSES))
        arrays: dict[str, np.ndarray] = {}
        for split in SPLITS:
            keys = [j for j in jobs if j[0] == split]
            arrays.update(split_arrays(split, [_clip_relpath(*k) for k in keys], [k[1] for k in keys],
                                       [results[k] for k in keys], ANNOTATION_KEYS, cfg.frames))
        np.savez_compressed(partial / "annotations.npz", **arrays)
        meta = {
            **meta_head(GENERATOR_NAME, GENERATOR_VERSION, cfg, seed, CLASSES),
            "frames": cfg.frames,
            "width": cfg.width,
            "height": cfg.height,
            "fps": cfg.fps,
            "pairs": [list(p) for p in PAIRS],
            "pair_semantics": "[a, b]: every clip of b is a freshly rendered clip of a with its frame order reversed",
            "hflip_map": list(HFLIP_MAP),
            "counts": counts,
            "counts_per_class": {s: cfg.per_class(s) for s in SPLITS},
            "encoder": {"codec": "libx264", "pix_fmt": "yuv420p", "crf": cfg.crf, "preset": cfg.x264_preset,
                        "container": "mp4", "threads": 1, "asm": "off" if x264_needs_plain_c(cfg.width) else "auto"},
            "photos": [p.name for p in photo_pool()],
            "annotation_keys": list(ANNOTATION_KEYS),
            "seed_derivation": "np.random.SeedSequence(seed, spawn_key=(split_id, label, index)); "
                               "split_id: train=0, val=1",
            "workers": workers,
            "wall_time_s": round(time.perf_counter() - t0, 3),
        }
        (partial / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    return generator_cli(
        argv, prog="python -m training.data.synthetic",
        description="Generate the time-reversal-pairs synthetic video dataset (H.264 mp4 + CSV + meta).",
        presets=PRESETS, generate_fn=generate,
        describe=lambda cfg, meta: (f"{meta['counts']} clips, {meta['num_classes']} classes, {cfg.frames} frames "
                                    f"{cfg.width}x{cfg.height} @ {cfg.fps} fps"))


if __name__ == "__main__":
    # Run the importable module's main (not this __main__ copy) so worker processes and pickles see one module.
    from training.data.synthetic import main as _main

    sys.exit(_main())
