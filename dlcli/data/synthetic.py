"""The built-in offline image dataset "shapes": ten classes of drawn shapes.

Why it exists: the CLI needs an image-classification dataset that works with
no download, at any resolution, and is hard enough that a real CNN has
something to learn yet easy enough that a ResNet-18 reaches > 95 % test
accuracy at 32 px in a few epochs.

Each image is one filled shape on a noisy background:

* the class is one of ``SHAPE_CLASSES``; image ``i`` has label ``i % 10``, so
  every prefix of ten images holds each class once (balanced by construction);
* the shape gets a random fill colour, circumradius (28-45 % of the image
  side), centre (kept so the shape stays inside the frame) and rotation;
* the background is a random flat colour plus per-pixel Gaussian noise of a
  random strength; the fill colour is redrawn until it is far enough from the
  background colour that the outline is always visible.

The classes are chosen to stay distinct under any rotation (there is a square
but no diamond, a circle but no hexagon, which at 32 px is nearly a circle).

Determinism: image ``i`` of ``(seed, split)`` is a pure function of
``(seed, split, i, image_size)``. Every image draws from its own generator
``np.random.default_rng([seed, SPLIT_CODES[split], i])``, so asking for more or
fewer images never changes the ones already produced, and the three splits
never share images.

Drawing: the shape's coverage mask is drawn with PIL ``ImageDraw`` at
``_supersample(image_size)`` times the target size and box-filtered down,
which gives anti-aliased edges cheaply; the colours are then blended in numpy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw

from dlcli.config import SHAPES_MIN_SIZE

SHAPE_CLASSES: tuple[str, ...] = (
    "circle",
    "ring",
    "triangle",
    "square",
    "pentagon",
    "star",
    "cross",
    "crescent",
    "arrow",
    "heart",
)

# Fixed forever: changing a code would silently change every generated image.
SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}

MIN_IMAGE_SIZE = SHAPES_MIN_SIZE  # the smallest side that fits a shape (why: dlcli/config.py)

# Shape circumradius as a fraction of the image side: large enough to be
# recognisable at 32 px, small enough that position still varies.
_RADIUS_RANGE = (0.28, 0.45)
# Minimum Euclidean RGB distance between fill and background colour, so the
# shape never blends into the background (max possible distance is ~441).
_MIN_COLOUR_DISTANCE = 140.0
# Per-pixel background noise standard deviation, in 0-255 units.
_NOISE_STD_RANGE = (3.0, 20.0)

# A unit shape: a list of ("polygon" | "ellipse", geometry, fill 255 or 0)
# drawing operations in a frame centred at 0 with circumradius about 1.
# fill 0 cuts a hole (ring, crescent).
_Op = tuple[str, np.ndarray, int]


def _regular_polygon(sides: int) -> np.ndarray:
    """Vertices of a regular polygon with circumradius 1, shape (sides, 2)."""
    angles = np.linspace(0.0, 2.0 * np.pi, sides, endpoint=False) - np.pi / 2
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    """A star: vertices alternate between radius 1 and ``inner``."""
    angles = np.linspace(0.0, 2.0 * np.pi, 2 * points, endpoint=False) - np.pi / 2
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _cross(half_width: float = 0.3) -> np.ndarray:
    """A plus sign with arms reaching radius ~1 (12 vertices)."""
    w, r = half_width, 0.95
    return np.array(
        [[-w, -r], [w, -r], [w, -w], [r, -w], [r, w], [w, w], [w, r], [-w, r], [-w, w], [-r, w], [-r, -w], [-w, -w]]
    )


def _arrow() -> np.ndarray:
    """An arrow pointing along +x: a shaft plus a triangular head."""
    return np.array([[-1.0, -0.2], [0.1, -0.2], [0.1, -0.6], [1.0, 0.0], [0.1, 0.6], [0.1, 0.2], [-1.0, 0.2]])


def _heart(points: int = 48) -> np.ndarray:
    """The classic parametric heart curve, scaled to circumradius ~1."""
    t = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
    xy = np.stack([x, y + 2.5], axis=1)  # recentre the bounding box vertically
    return xy / np.abs(xy).max()


def _disc(cx: float = 0.0, cy: float = 0.0, r: float = 1.0) -> np.ndarray:
    """A circle as (centre_x, centre_y, radius); drawn as an ellipse."""
    return np.array([cx, cy, r])


# Class name -> unit drawing operations. A tuple of pairs (not a dict) so the
# module holds no mutable global state.
_UNIT_SHAPES: tuple[tuple[str, Callable[[], list[_Op]]], ...] = (
    ("circle", lambda: [("ellipse", _disc(), 255)]),
    ("ring", lambda: [("ellipse", _disc(), 255), ("ellipse", _disc(r=0.55), 0)]),
    ("triangle", lambda: [("polygon", _regular_polygon(3), 255)]),
    ("square", lambda: [("polygon", _regular_polygon(4), 255)]),
    ("pentagon", lambda: [("polygon", _regular_polygon(5), 255)]),
    ("star", lambda: [("polygon", _star(), 255)]),
    ("cross", lambda: [("polygon", _cross(), 255)]),
    ("crescent", lambda: [("ellipse", _disc(), 255), ("ellipse", _disc(cx=0.45, r=0.8), 0)]),
    ("arrow", lambda: [("polygon", _arrow(), 255)]),
    ("heart", lambda: [("polygon", _heart(), 255)]),
)
assert tuple(name for name, _ in _UNIT_SHAPES) == SHAPE_CLASSES


def _supersample(image_size: int) -> int:
    """Drawing scale factor: 4x for small images (edges matter most there), less for big ones."""
    if image_size <= 128:
        return 4
    if image_size <= 256:
        return 2
    return 1


def _place(op: _Op, angle: float, scale: float, centre: np.ndarray) -> _Op:
    """Rotate by ``angle``, scale by ``scale`` and move a unit op to ``centre`` (pixels)."""
    kind, geom, fill = op
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if kind == "polygon":
        return kind, geom @ rot.T * scale + centre, fill
    # ellipse: only its centre moves with the rotation; a disc is rotation invariant.
    return kind, np.array([*(rot @ geom[:2] * scale + centre), geom[2] * scale]), fill


def _draw_mask(ops: list[_Op], size: int) -> np.ndarray:
    """Rasterise placed ops onto a ``size`` x ``size`` canvas; return coverage in [0, 1]."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for kind, geom, fill in ops:
        if kind == "polygon":
            draw.polygon([tuple(p) for p in geom.tolist()], fill=fill)
        else:
            cx, cy, r = geom.tolist()
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _shape_mask(label: int, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased coverage mask (image_size, image_size) of a randomly placed shape."""
    factor = _supersample(image_size)
    big = image_size * factor
    radius = rng.uniform(*_RADIUS_RANGE) * big
    # Keep the whole circumscribed disc inside the frame (plus half a pixel),
    # so no class-defining corner is ever cut off.
    margin = radius + 0.5 * factor
    centre = rng.uniform(margin, big - margin, size=2)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ops = [_place(op, angle, radius, centre) for op in _UNIT_SHAPES[label][1]()]
    mask = _draw_mask(ops, big)
    if factor == 1:
        return mask
    # Box-filter downsample == average of each factor x factor block: exact
    # area coverage, and cheaper than a PIL resize round trip.
    return mask.reshape(image_size, factor, image_size, factor).mean(axis=(1, 3))


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Background and fill RGB colours at least ``_MIN_COLOUR_DISTANCE`` apart."""
    background = rng.uniform(0.0, 255.0, size=3)
    while True:  # rejection sampling; accepts within a few tries on average
        fill = rng.uniform(0.0, 255.0, size=3)
        if np.linalg.norm(fill - background) >= _MIN_COLOUR_DISTANCE:
            return background, fill


def _make_image(label: int, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 image, channels first (3, image_size, image_size)."""
    background, fill = _colours(rng)
    mask = _shape_mask(label, image_size, rng)[None]  # (1, H, W)
    noise_std = rng.uniform(*_NOISE_STD_RANGE)
    noise = rng.standard_normal((3, image_size, image_size), dtype=np.float32) * noise_std
    back = background[:, None, None] + noise
    image = back * (1.0 - mask) + fill[:, None, None] * mask
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _split_code(split: str) -> int:
    """Fixed integer seed component of a split name."""
    try:
        return SPLIT_CODES[split]
    except KeyError:
        known = ", ".join(SPLIT_CODES)
        raise ValueError(f"unknown split {split!r} for the shapes dataset; use one of: {known}") from None


def make_shapes(count: int, image_size: int, seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images, labels) of the shapes dataset.

    images: uint8 tensor (count, 3, image_size, image_size); labels: int64 tensor (count,).

    Image ``i`` has label ``i % len(SHAPE_CLASSES)`` and depends only on
    ``(seed, split, i, image_size)``; ``split`` is "train", "val" or "test".
    """
    code = _split_code(split)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
    if seed < 0:
        # numpy seed sequences only take non-negative integers.
        raise ValueError(f"seed must be >= 0, got {seed}")
    n_classes = len(SHAPE_CLASSES)
    images = np.empty((count, 3, image_size, image_size), dtype=np.uint8)
    labels = np.arange(count, dtype=np.int64) % n_classes
    for i in range(count):
        rng = np.random.default_rng([seed, code, i])
        images[i] = _make_image(int(labels[i]), image_size, rng)
    return torch.from_numpy(images), torch.from_numpy(labels)
