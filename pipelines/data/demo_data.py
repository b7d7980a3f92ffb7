"""A deterministic, generated image-classification set that looks like the real job.

JPEG "photos" of about 400x300 pixels (some portrait) in ImageFolder layout
``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``. Each of up to 10 classes is an
object with its own shape, colour family and surface texture (a red solid disc, a blue striped
square, a green dotted triangle, ...), drawn 1-3 times at a random position, scale and rotation
on a cluttered background (smooth colour gradients, low-frequency blotches, blur, line clutter,
smaller distractor shapes of any colour, sometimes a small object of another class, grain).
A ResNet-18 trained from scratch learns it within a couple of CPU epochs well above chance
(val accuracy about 50 % after 2 epochs and 88 % after 6; 224 px, AdamW, 60 train images per
class), but not trivially: colour is a strong cue (a hue-histogram nearest-centroid classifier
gets about 75 %), shape and texture are needed for the rest.

Nothing is downloaded: :func:`ensure_demo_data` generates the set into a cache folder on first
use and afterwards only checks a completion marker that records the generation parameters
(a changed parameter set regenerates; a half-written folder is never taken as complete because
the set is written to a temporary folder and renamed into place). The same parameters give
byte-identical files: every image has its own ``numpy.random.Generator`` seeded from
``(seed, split, class, index)``, JPEG settings are fixed and no timestamps or EXIF are written.

:func:`make_imagenet_like` makes ImageNet-sized JPEGs (about 500x375, quality 90, ~110 KB with
fine texture) for throughput benchmarks, where decode cost should resemble ImageNet's.

CLI::

    python -m pipelines.data.demo_data [--root R] [--train-per-class N] [--val-per-class N] [--seed S]
    python -m pipelines.data.demo_data --imagenet-like 2000 [--root R]

prints the dataset root.
"""
from __future__ import annotations

import argparse
import colorsys
import fcntl
import json
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from kernels.checks import check_int

#: Bump when the renderer changes, so cached sets made by an older generator are regenerated.
GENERATOR_VERSION = 2

MARKER_NAME = ".complete.json"
CACHE_ENV = "DALI_OCCLUSION_CACHE"
SPLITS = ("train", "val")
_SPLIT_CODES = {"train": 0, "val": 1}


def cache_dir() -> Path:
    """Base cache folder: ``$DALI_OCCLUSION_CACHE`` when set, else ``~/.cache/dali_occlusion``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dali_occlusion"


# --------------------------------------------------------------------------------------------
# Shapes (unit-radius polygons) and class signatures
# --------------------------------------------------------------------------------------------

def _circle(n: int = 48, rx: float = 1.0, ry: float = 1.0, cx: float = 0.0) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), ry * np.sin(t)], axis=1)


def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    t = phase + np.arange(n) * 2.0 * math.pi / n
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    t = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _cross(arm: float = 0.34) -> np.ndarray:
    a = arm
    return np.array([(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a),
                     (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)], dtype=np.float64)


def _heart(n: int = 48) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], axis=1)
    return pts / np.abs(pts).max()


#: shape name -> list of (unit polygon, mask fill). Later polygons paint over earlier ones, so a
#: fill of 0 cuts a hole (ring, crescent).
SHAPES: dict[str, list[tuple[np.ndarray, int]]] = {
    "disc": [(_circle(), 255)],
    "square": [(_regular(4, math.pi / 4) * 1.0, 255)],
    "triangle": [(_regular(3, -math.pi / 2), 255)],
    "star": [(_star(), 255)],
    "ring": [(_circle(), 255), (_circle(40, 0.55, 0.55), 0)],
    "cross": [(_cross(), 255)],
    "ellipse": [(_circle(48, 1.0, 0.5), 255)],
    "hexagon": [(_regular(6), 255)],
    "crescent": [(_circle(), 255), (_circle(40, 0.85, 0.85, 0.45), 0)],
    "heart": [(_heart(), 255)],
}


@dataclass(frozen=True)
class ClassSpec:
    """The signature of one class: object shape, hue of its colour family, surface texture."""

    shape: str
    hue: float  # in [0, 1)
    texture: str


#: The classes, in label order (class folder names are ``f"{index:02d}_{shape}"``).
CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec("disc", 0.00, "solid"),
    ClassSpec("square", 0.60, "stripes"),
    ClassSpec("triangle", 0.33, "dots"),
    ClassSpec("star", 0.15, "radial"),
    ClassSpec("ring", 0.78, "checker"),
    ClassSpec("cross", 0.50, "waves"),
    ClassSpec("ellipse", 0.07, "blotchy"),
    ClassSpec("hexagon", 0.90, "concentric"),
    ClassSpec("crescent", 0.24, "stripes"),
    ClassSpec("heart", 0.68, "dots"),
)


def class_names(num_classes: int = len(CLASSES)) -> list[str]:
    """Folder names of the first ``num_classes`` classes (sorted order == label order)."""
    check_int("num_classes", num_classes, lo=1, hi=len(CLASSES))
    return [f"{i:02d}_{CLASSES[i].shape}" for i in range(num_classes)]


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

#: Amplitude (grey levels) per unit of ``detail`` above 1 of the photo-like fine texture octaves;
#: with ``detail=4`` this puts 500x375 quality-90 JPEGs at about ImageNet's 110 KB.
FINE_DETAIL_GAIN = 20.0


@dataclass(frozen=True)
class DemoParams:
    """Everything that determines the generated files (recorded in the completion marker)."""

    train_per_class: int = 60
    val_per_class: int = 20
    num_classes: int = 10
    seed: int = 0
    width_range: tuple[int, int] = (320, 500)
    height_range: tuple[int, int] = (240, 375)
    portrait_fraction: float = 0.2
    quality: int = 85
    detail: float = 1.0  # scales fine texture and grain (file size); 1.0 = demo, 4 = ImageNet-like
    generator_version: int = GENERATOR_VERSION

    def validate(self) -> None:
        check_int("num_classes", self.num_classes, lo=1, hi=len(CLASSES))
        for name in ("train_per_class", "val_per_class"):
            check_int(name, getattr(self, name), lo=0)
        if self.train_per_class + self.val_per_class == 0:
            raise ValueError("train_per_class + val_per_class must be > 0")
        for name in ("width_range", "height_range"):
            lo, hi = getattr(self, name)
            if not 8 <= lo <= hi:
                raise ValueError(f"{name} must be (lo, hi) with 8 <= lo <= hi, got {(lo, hi)}")
        if not 0.0 <= self.portrait_fraction <= 1.0:
            raise ValueError(f"portrait_fraction must be in [0, 1], got {self.portrait_fraction}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")
        if self.detail < 0:
            raise ValueError(f"detail must be >= 0, got {self.detail}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed}")

    def as_json(self) -> dict:
        d = asdict(self)
        d["width_range"] = list(self.width_range)
        d["height_range"] = list(self.height_range)
        return d


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)),
                    dtype=np.float32) * 255.0


def _class_palette(rng: np.random.Generator, spec: ClassSpec) -> tuple[np.ndarray, np.ndarray]:
    """Two colours of the class family: a main colour and a darker/desaturated partner."""
    h = spec.hue + rng.uniform(-0.025, 0.025)
    s = rng.uniform(0.55, 1.0)
    v = rng.uniform(0.55, 1.0)
    c1 = _hsv(h, s, v)
    c2 = _hsv(h + rng.uniform(-0.03, 0.03), s * rng.uniform(0.3, 0.7), v * rng.uniform(0.35, 0.65))
    return c1, c2


def _value_noise(rng: np.random.Generator, h: int, w: int, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth noise in about [-1, 1]: a small random grid upsampled bicubically."""
    gh = max(2, cells * h // max(h, w) + 1)
    gw = max(2, cells * w // max(h, w) + 1)
    out = np.empty((h, w, channels), np.float32)
    for c in range(channels):
        grid = rng.uniform(-1.0, 1.0, size=(gh, gw)).astype(np.float32)
        out[..., c] = np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.BICUBIC))
    return out


def _texture(kind: str, rng: np.random.Generator, u: np.ndarray, v: np.ndarray, r: float,
             c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Fill colours (h, w, 3) of texture ``kind`` in object coordinates ``u, v`` (pixels)."""
    period = max(3.0, r * rng.uniform(0.22, 0.38))
    if kind == "solid":
        t = np.zeros_like(u)
    elif kind == "stripes":
        t = ((u % period) < period * 0.5).astype(np.float32)
    elif kind == "checker":
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif kind == "dots":
        du = (u % period) - period / 2
        dv = (v % period) - period / 2
        t = (du * du + dv * dv < (0.3 * period) ** 2).astype(np.float32)
    elif kind == "radial":
        t = np.clip(np.sqrt(u * u + v * v) / max(r, 1.0), 0.0, 1.0)
    elif kind == "waves":
        t = 0.5 + 0.5 * np.sin(2 * math.pi * u / period + 2.0 * np.sin(2 * math.pi * v / (2 * period)))
    elif kind == "concentric":
        t = 0.5 + 0.5 * np.sign(np.sin(2 * math.pi * np.sqrt(u * u + v * v) / period))
    elif kind == "blotchy":
        h, w = u.shape
        t = np.clip(0.5 + 0.9 * _value_noise(rng, h, w, max(3, int(2 * r / period)))[..., 0], 0, 1)
    else:
        raise ValueError(f"unknown texture {kind!r}")
    t = t.astype(np.float32)[..., None]
    return c1 * (1.0 - t) + c2 * t


def _draw_shape(canvas: np.ndarray, rng: np.random.Generator, shape: str, cx: float, cy: float,
                r: float, theta: float, colours: tuple[np.ndarray, np.ndarray], texture: str,
                alpha: float = 1.0) -> None:
    """Composite one rotated, textured, softly shaded shape into ``canvas`` (H, W, 3 float32)."""
    H, W = canvas.shape[:2]
    x0, x1 = max(0, int(cx - r * 1.05) - 1), min(W, int(cx + r * 1.05) + 2)
    y0, y1 = max(0, int(cy - r * 1.05) - 1), min(H, int(cy + r * 1.05) + 2)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    ct, st = math.cos(theta), math.sin(theta)
    rot = np.array([[ct, -st], [st, ct]])
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(mask)
    for poly, fill in SHAPES[shape]:
        pts = poly @ rot.T * r + (cx - x0, cy - y0)
        draw.polygon([(float(x), float(y)) for x, y in pts], fill=fill)
    mask = mask.filter(ImageFilter.GaussianBlur(0.7))
    a = np.asarray(mask, dtype=np.float32) * (alpha / 255.0)

    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xs - cx, ys - cy
    u = dx * ct + dy * st  # object frame: rotates with the shape, so textures do too
    v = -dx * st + dy * ct
    fill = _texture(texture, rng, u, v, r, *colours)
    # Directional light: a soft brightness ramp across the object.
    lt = rng.uniform(0, 2 * math.pi)
    shade = 1.0 + rng.uniform(0.05, 0.25) * (dx * math.cos(lt) + dy * math.sin(lt)) / max(r, 1.0)
    fill *= shade[..., None]
    region = canvas[y0:y1, x0:x1]
    region += (fill - region) * a[..., None]


def _background(rng: np.random.Generator, h: int, w: int, detail: float) -> np.ndarray:
    """Smooth two-colour gradient + low-frequency blotches + line clutter + blur."""
    c0 = _hsv(rng.uniform(), rng.uniform(0.05, 0.5), rng.uniform(0.3, 0.9))
    c1 = _hsv(rng.uniform(), rng.uniform(0.05, 0.5), rng.uniform(0.3, 0.9))
    ang = rng.uniform(0, 2 * math.pi)
    ys = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xs = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    t = np.clip((xs * math.cos(ang) + ys * math.sin(ang)) + 0.5, 0, 1)[..., None]
    bg = c0 * (1 - t) + c1 * t
    bg += _value_noise(rng, h, w, int(rng.integers(3, 9)), 3) * rng.uniform(10, 45)
    if detail > 0:  # fine "foliage" texture; with detail > 1 it drives the JPEG size up
        bg += _value_noise(rng, h, w, int(rng.integers(30, 60)), 3) * (6.0 * detail)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 7))):
        col = tuple(int(c) for c in _hsv(rng.uniform(), rng.uniform(0, 0.6), rng.uniform(0.2, 0.95)))
        pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(2)]
        draw.line(pts, fill=col, width=int(rng.integers(1, 5)))
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.8, 2.5))))
    return np.asarray(img, dtype=np.float32).copy()


def _distractor(canvas: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    """A small plain shape of any colour (shapes shared with the classes, colours unrelated)."""
    h, w = canvas.shape[:2]
    shape = list(SHAPES)[int(rng.integers(len(SHAPES)))]
    col = _hsv(rng.uniform(), rng.uniform(0.0, 0.7), rng.uniform(0.25, 0.95))
    r = scale * rng.uniform(0.04, 0.13)
    _draw_shape(canvas, rng, shape, rng.uniform(0, w), rng.uniform(0, h), r, rng.uniform(0, 2 * math.pi),
                (col, col * 0.8), "solid", alpha=float(rng.uniform(0.6, 1.0)))


def render_image(params: DemoParams, split: str, label: int, index: int) -> Image.Image:
    """Render image ``index`` of class ``label`` in ``split`` (deterministic in its arguments)."""
    ss = np.random.SeedSequence([params.seed, _SPLIT_CODES[split], label, index])
    rng = np.random.Generator(np.random.PCG64(ss))
    w = int(rng.integers(params.width_range[0], params.width_range[1] + 1))
    h = int(rng.integers(params.height_range[0], params.height_range[1] + 1))
    if rng.uniform() < params.portrait_fraction:
        w, h = h, w
    scale = float(min(w, h))
    spec = CLASSES[label]

    canvas = _background(rng, h, w, params.detail)
    for _ in range(int(rng.integers(2, 8))):
        _distractor(canvas, rng, scale)
    # Sometimes a small object of another class: the main object still decides the label.
    if params.num_classes > 1 and rng.uniform() < 0.25:
        other = CLASSES[(label + 1 + int(rng.integers(params.num_classes - 1))) % params.num_classes]
        _draw_shape(canvas, rng, other.shape, rng.uniform(0, w), rng.uniform(0, h),
                    scale * rng.uniform(0.07, 0.13), rng.uniform(0, 2 * math.pi),
                    _class_palette(rng, other), other.texture)
    n_obj = int(rng.choice([1, 1, 1, 2, 2, 3]))
    for k in range(n_obj):
        r = scale * (rng.uniform(0.18, 0.38) if k == 0 else rng.uniform(0.1, 0.22))
        cx = rng.uniform(0.15, 0.85) * w
        cy = rng.uniform(0.15, 0.85) * h
        _draw_shape(canvas, rng, spec.shape, cx, cy, r, rng.uniform(0, 2 * math.pi),
                    _class_palette(rng, spec), spec.texture)
    if rng.uniform() < 0.3:  # a distractor in front of the object
        _distractor(canvas, rng, scale)

    # Camera: exposure/contrast, a colour cast, grain.
    gain = rng.uniform(0.75, 1.2)
    cast = rng.uniform(0.92, 1.08, size=3).astype(np.float32)
    canvas = (canvas - 128.0) * rng.uniform(0.8, 1.15) + 128.0
    canvas *= gain * cast
    sigma = rng.uniform(1.5, 5.0) * max(params.detail, 0.0)
    if sigma > 0:
        canvas += rng.standard_normal(size=(h, w, 1), dtype=np.float32) * sigma
    if params.detail > 1.0:
        # Photo-like fine detail (features of a few pixels) everywhere: what makes real JPEGs
        # heavy. Only drawn for detail > 1, so the demo set's bytes do not depend on it.
        amp = FINE_DETAIL_GAIN * (params.detail - 1.0)
        for div in (1, 2, 4):  # three octaves: 1-, 2- and 4-pixel features
            canvas += _value_noise(rng, h, w, max(h, w) // div, 1) * amp
    img = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
    radius = float(rng.uniform(0.0, 0.8)) / max(params.detail, 1.0)
    if radius > 0.25:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    return img


def save_jpeg(img: Image.Image, path: str | os.PathLike, quality: int) -> None:
    """Baseline JPEG, 4:2:0, fixed quality, no EXIF/ICC/timestamps: byte-reproducible."""
    img.save(path, format="JPEG", quality=int(quality), subsampling=2, optimize=False,
             progressive=False)


def _render_job(params: DemoParams, out_root: str, split: str, label: int, index: int, name: str) -> int:
    path = os.path.join(out_root, split, name, f"{name}_{index:05d}.jpg")
    save_jpeg(render_image(params, split, label, index), path, params.quality)
    return os.path.getsize(path)


# --------------------------------------------------------------------------------------------
# Cache management
# --------------------------------------------------------------------------------------------

def _expected_counts(params: DemoParams) -> dict[str, int]:
    return {"train": params.train_per_class, "val": params.val_per_class}


def _is_complete(root: Path, params: DemoParams) -> bool:
    """Marker present with the same parameters, and every expected class folder holds its files."""
    try:
        marker = json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("params") != params.as_json():
        return False
    for split, n in _expected_counts(params).items():
        if n == 0:
            continue
        for name in class_names(params.num_classes):
            d = root / split / name
            try:
                count = sum(1 for e in os.scandir(d) if e.name.endswith(".jpg"))
            except OSError:
                return False
            if count != n:
                return False
    return True


def _generate(params: DemoParams, out_root: Path, workers: int | None) -> dict:
    names = class_names(params.num_classes)
    jobs = []
    for split, n in _expected_counts(params).items():
        if n == 0:
            continue
        for label, name in enumerate(names):
            (out_root / split / name).mkdir(parents=True, exist_ok=True)
            jobs.extend((split, label, i, name) for i in range(n))
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    t0 = time.perf_counter()
    if workers <= 1 or len(jobs) < 16:
        sizes = [_render_job(params, str(out_root), *job) for job in jobs]
    else:
        # Threads: Pillow's drawing/filters/JPEG encoder and NumPy's large-array work release
        # the GIL, and threads avoid re-importing the (possibly heavy) package in child processes.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            sizes = list(pool.map(lambda job: _render_job(params, str(out_root), *job), jobs))
    return {"images": len(jobs), "bytes": int(sum(sizes)), "seconds": round(time.perf_counter() - t0, 3)}


def ensure_demo_data(
    root: str | os.PathLike | None = None,
    train_per_class: int = 60,
    val_per_class: int = 20,
    seed: int = 0,
    *,
    num_classes: int = 10,
    width_range: Sequence[int] = (320, 500),
    height_range: Sequence[int] = (240, 375),
    portrait_fraction: float = 0.2,
    quality: int = 85,
    detail: float = 1.0,
    workers: int | None = None,
    force: bool = False,
) -> Path:
    """Generate the demo set into ``root`` unless a complete copy with the same parameters is there.

    ``root`` defaults to ``cache_dir() / "demo"`` (``$DALI_OCCLUSION_CACHE/demo`` or
    ``~/.cache/dali_occlusion/demo``). Layout: ``root/train/<class>/*.jpg`` (``train_per_class``
    each) and ``root/val/<class>/*.jpg`` (``val_per_class`` each; a split with 0 images is not
    created), class folders ``00_disc, 01_square, ...`` (see :data:`CLASSES`). Image sizes are
    drawn from ``width_range`` x ``height_range`` (inclusive), swapped to portrait with probability
    ``portrait_fraction``; ``quality`` is the JPEG quality; ``detail`` scales fine texture and grain.

    Any existing content of ``root`` that is not a complete set of these parameters is replaced
    (only do this on folders the generator owns). Concurrent callers are serialised with a lock
    file beside ``root``. Returns ``root`` as an absolute :class:`Path`.
    """
    params = DemoParams(
        train_per_class=int(train_per_class), val_per_class=int(val_per_class),
        num_classes=int(num_classes), seed=int(seed),
        width_range=(int(width_range[0]), int(width_range[1])),
        height_range=(int(height_range[0]), int(height_range[1])),
        portrait_fraction=float(portrait_fraction), quality=int(quality), detail=float(detail),
    )
    params.validate()
    root = Path(root).expanduser() if root is not None else cache_dir() / "demo"
    root = root.absolute()
    if not force and _is_complete(root, params):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"demo data root {str(root)!r} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not (root / MARKER_NAME).exists():
        raise FileExistsError(
            f"demo data root {str(root)!r} is a non-empty folder without a {MARKER_NAME} marker; "
            f"refusing to replace what the generator did not write (pick an empty or new folder)"
        )

    lock_path = root.parent / f".{root.name}.lock"
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not force and _is_complete(root, params):  # another process made it meanwhile
                return root
            tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
            try:
                stats = _generate(params, tmp, workers)
                marker = {"params": params.as_json(), "stats": stats}
                (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")
                if root.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
                    os.rename(root, old / "data")
                    os.rename(tmp, root)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.rename(tmp, root)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root


#: ImageNet-1k train JPEGs average about 400x350 pixels and 110 KB; these settings come close.
IMAGENET_LIKE = dict(width_range=(400, 500), height_range=(300, 375), portrait_fraction=0.2,
                     quality=90, detail=4.0)


def make_imagenet_like(
    root: str | os.PathLike | None = None,
    n: int = 1000,
    *,
    size: Sequence[int] = (500, 375),
    quality: int = 90,
    num_classes: int = 10,
    seed: int = 0,
    workers: int | None = None,
    force: bool = False,
) -> Path:
    """ImageNet-sized JPEGs for benchmarks: ``root/train/<class>/*.jpg``, ``n`` images in total
    (rounded up to a multiple of ``num_classes``), widths/heights drawn from 80-100 % of ``size``
    (20 % portrait), JPEG ``quality``, fine texture so files weigh about as much as ImageNet's
    (~110 KB at 500x375, quality 90). ``root`` defaults to ``cache_dir() / "imagenet_like"``.
    Cached like :func:`ensure_demo_data`; returns the root (its ``train`` folder is the split)."""
    if n <= 0:
        raise ValueError(f"n must be a positive number of images, got {n}")
    w, h = int(size[0]), int(size[1])
    root = Path(root) if root is not None else cache_dir() / "imagenet_like"
    return ensure_demo_data(
        root, train_per_class=-(-int(n) // int(num_classes)), val_per_class=0, seed=seed,
        num_classes=num_classes, width_range=(int(w * 0.8), w), height_range=(int(h * 0.8), h),
        portrait_fraction=IMAGENET_LIKE["portrait_fraction"], quality=quality,
        detail=IMAGENET_LIKE["detail"], workers=workers, force=force,
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.data.demo_data", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=None, help="output folder (default: $DALI_OCCLUSION_CACHE/demo "
                    "or ~/.cache/dali_occlusion/demo; imagenet_like instead of demo with --imagenet-like)")
    ap.add_argument("--train-per-class", type=int, default=60)
    ap.add_argument("--val-per-class", type=int, default=20)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quality", type=int, default=None, help="JPEG quality (default 85; 90 with --imagenet-like)")
    ap.add_argument("--workers", type=int, default=None, help="rendering threads (default: CPU count, max 8)")
    ap.add_argument("--imagenet-like", type=int, default=None, metavar="N",
                    help="make N ImageNet-sized JPEGs (train split only) for benchmarks instead")
    ap.add_argument("--force", action="store_true", help="regenerate even when a complete copy exists")
    args = ap.parse_args(argv)
    try:
        if args.imagenet_like is not None:
            path = make_imagenet_like(args.root, args.imagenet_like, quality=args.quality or 90,
                                      num_classes=args.num_classes, seed=args.seed,
                                      workers=args.workers, force=args.force)
        else:
            path = ensure_demo_data(args.root, args.train_per_class, args.val_per_class, args.seed,
                                    num_classes=args.num_classes, quality=args.quality or 85,
                                    workers=args.workers, force=args.force)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
