"""``shapes``: a procedurally rendered colour-image classification set with real learning difficulty.

Each image shows one of ten shapes (the class) at a random position, size and rotation, in a random
colour, over a random colour-gradient background with low-frequency texture, sometimes with a small
distractor blob, plus pixel noise; rendered at 2x and box-filtered (anti-aliased), stored as uint8.
Nothing is downloaded: a seed and an image shape fix the whole set, so every machine renders the
same pixels. A VGG-style network learns it in tens to a few hundred SFL rounds (docs/design.md,
"The default preset"); the classes differ in outline only, so colour and texture are nuisances the
network must learn to ignore.
"""

from __future__ import annotations

import numpy as np

SHAPE_NAMES: tuple[str, ...] = (
    "disk", "square", "triangle", "plus", "ring", "star", "hexagon", "bar", "corner", "crescent",
)
_SUPERSAMPLE = 2
_NOISE_STD = 0.06  # pixel noise, in [0, 1] intensity units
_DISTRACTOR_PROBABILITY = 0.3
_CENTRE_RANGE = 0.25  # the shape's centre is uniform in [-0.25, 0.25]^2 (units: half the image)
_SCALE_RANGE = (0.6, 0.95)  # the shape's size relative to half the image
_MIN_COLOUR_DISTANCE = 0.45  # between the shape's colour and the local background (RGB, [0, 1])


def render_shapes(
    num_samples: int, image_shape: tuple[int, int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels): uint8 (N, C, H, W) and int64 (N,), classes balanced and shuffled.

    ``image_shape`` is (C, H, W) with C = 3 (colour) or 1 (the luminance of the colour image)."""
    channels, height, width = image_shape
    labels = rng.permutation(np.arange(num_samples) % len(SHAPE_NAMES)).astype(np.int64)
    images = np.empty((num_samples, channels, height, width), dtype=np.uint8)
    for start in range(0, num_samples, 1024):  # bounded memory whatever the size
        stop = min(start + 1024, num_samples)
        rgb = _render_batch(labels[start:stop], height, width, rng)
        if channels == 1:
            rgb = rgb @ np.array([0.299, 0.587, 0.114])[:, None]
        images[start:stop] = np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8).transpose(0, 3, 1, 2)
    return images, labels


def _render_batch(labels: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(n, H, W, 3) float images in [0, 1] (before noise clipping) for ``labels``."""
    n = len(labels)
    hs, ws = height * _SUPERSAMPLE, width * _SUPERSAMPLE
    # Pixel centres in [-1, 1], y down; one unit of length is half the image.
    y = (np.arange(hs) + 0.5) / hs * 2 - 1
    x = (np.arange(ws) + 0.5) / ws * 2 - 1
    yy, xx = np.meshgrid(y, x, indexing="ij")

    # The background is smooth: render it at the output resolution and repeat it.
    background = _background(n, yy[::_SUPERSAMPLE, ::_SUPERSAMPLE], xx[::_SUPERSAMPLE, ::_SUPERSAMPLE], rng)
    background = background.repeat(_SUPERSAMPLE, axis=1).repeat(_SUPERSAMPLE, axis=2)
    centre = rng.uniform(-_CENTRE_RANGE, _CENTRE_RANGE, (n, 2))
    scale = rng.uniform(*_SCALE_RANGE, n)
    angle = rng.uniform(0.0, 2 * np.pi, n)
    mask = _shape_masks(labels, yy, xx, centre, scale, angle)

    local = np.einsum("nhwc,nhw->nc", background, mask) / np.maximum(mask.sum((1, 2)), 1.0)[:, None]
    colour = _contrasting_colour(local, rng)
    image = background * (1 - mask[..., None]) + colour[:, None, None, :] * mask[..., None]

    has_distractor = rng.random(n) < _DISTRACTOR_PROBABILITY
    if has_distractor.any():
        blob_centre = rng.uniform(-0.75, 0.75, (n, 2))
        blob_radius = rng.uniform(0.1, 0.18, n)
        distance = np.hypot(yy[None] - blob_centre[:, 0, None, None], xx[None] - blob_centre[:, 1, None, None])
        blob = (distance <= blob_radius[:, None, None]) & has_distractor[:, None, None]
        blob_colour = rng.uniform(0.0, 1.0, (n, 3))
        image = np.where(blob[..., None], blob_colour[:, None, None, :], image)

    image = image.reshape(n, height, _SUPERSAMPLE, width, _SUPERSAMPLE, 3).mean((2, 4))
    return image + rng.normal(0.0, _NOISE_STD, image.shape)


def _background(n: int, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A linear gradient between two random colours plus two random low-frequency waves, (n, H, W, 3)."""
    start, end = rng.uniform(0.0, 1.0, (2, n, 3))
    direction = rng.uniform(0.0, 2 * np.pi, n)
    t = (np.cos(direction)[:, None, None] * xx + np.sin(direction)[:, None, None] * yy + 1.0) / 2.0
    image = start[:, None, None, :] + (end - start)[:, None, None, :] * t[..., None]
    for _ in range(2):
        frequency = rng.uniform(1.0, 3.0, (n, 2))
        phase = rng.uniform(0.0, 2 * np.pi, n)
        wave = np.sin(np.pi * (frequency[:, 0, None, None] * xx + frequency[:, 1, None, None] * yy) + phase[:, None, None])
        image = image + rng.uniform(0.0, 0.12, (n, 1, 1, 3)) * wave[..., None]
    return np.clip(image, 0.0, 1.0)


def _contrasting_colour(local: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random colour per image at least ``_MIN_COLOUR_DISTANCE`` from ``local`` (redrawn until so)."""
    colour = rng.uniform(0.0, 1.0, local.shape)
    for _ in range(100):
        close = np.linalg.norm(colour - local, axis=1) < _MIN_COLOUR_DISTANCE
        if not close.any():
            break
        colour[close] = rng.uniform(0.0, 1.0, (int(close.sum()), 3))
    else:  # a background so mid-grey that no draw contrasts: take its complement
        colour[close] = np.round(1.0 - local[close])
    return colour


def _shape_masks(
    labels: np.ndarray, yy: np.ndarray, xx: np.ndarray, centre: np.ndarray, scale: np.ndarray, angle: np.ndarray
) -> np.ndarray:
    """(n, H, W) float masks: 1 inside each image's shape, in its own rotated, scaled frame."""
    dy = (yy[None] - centre[:, 0, None, None]) / scale[:, None, None]
    dx = (xx[None] - centre[:, 1, None, None]) / scale[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    masks = np.zeros(u.shape, dtype=bool)
    for label, inside in enumerate(_INSIDE):
        rows = labels == label
        if rows.any():
            masks[rows] = inside(u[rows], v[rows])
    return masks.astype(np.float64)


def _regular_polygon(u: np.ndarray, v: np.ndarray, sides: int, apothem: float) -> np.ndarray:
    normals = np.linspace(0.0, 2 * np.pi, sides, endpoint=False)
    return np.all([np.cos(a) * u + np.sin(a) * v <= apothem for a in normals], axis=0)


_INSIDE = (
    lambda u, v: u**2 + v**2 <= 0.85**2,  # disk
    lambda u, v: np.maximum(abs(u), abs(v)) <= 0.7,  # square
    lambda u, v: _regular_polygon(u, v, 3, 0.45),  # triangle
    lambda u, v: ((abs(u) <= 0.25) & (abs(v) <= 0.9)) | ((abs(v) <= 0.25) & (abs(u) <= 0.9)),  # plus
    lambda u, v: (u**2 + v**2 <= 0.9**2) & (u**2 + v**2 >= 0.5**2),  # ring
    lambda u, v: np.hypot(u, v) <= 0.55 + 0.35 * np.cos(5 * np.arctan2(v, u)),  # star
    lambda u, v: _regular_polygon(u, v, 6, 0.75),  # hexagon
    lambda u, v: (u / 0.95) ** 2 + (v / 0.3) ** 2 <= 1.0,  # bar
    lambda u, v: (((u >= -0.7) & (u <= 0.7) & (v >= -0.7) & (v <= -0.25))
                  | ((u >= -0.7) & (u <= -0.25) & (v >= -0.7) & (v <= 0.7))),  # corner
    lambda u, v: (u**2 + v**2 <= 0.9**2) & ((u - 0.45) ** 2 + v**2 >= 0.7**2),  # crescent
)
