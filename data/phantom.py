"""Embedded synthetic brain MRI dataset: axial slices with ground-truth lesion masks.

Generated with numpy + OpenCV only, so tests, smoke runs and demos work offline. Every slice
draws from its own random streams, derived from (seed, label, index) and split into anatomy,
lesion and noise streams: an abnormal slice's anatomy and noise are drawn exactly as a normal's,
and rendering it with ``with_lesion=False`` gives the same slice without its lesion.

Lesions span easy (large, strong) to genuinely hard (a few pixels, 5% contrast), so a simple
autoencoder separates the classes clearly better than chance but far from perfectly.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from data.collection import ImageCollection

_LABELS = {0: "normal", 1: "abnormal"}
# Lesion radius range in pixels at 128x128; scaled with the image size.
_LESION_RADIUS_128 = (2.5, 20.0)
_MIN_LESION_RADIUS = 1.5
# Lesion contrast: relative intensity change, x1.05 .. x4 brighter or /1.05 .. /4 darker,
# log-uniform so that subtle and strong lesions are equally common.
_LESION_CONTRAST = (0.05, 3.0)
_SECOND_LESION_PROBABILITY = 0.25
# Draws: `test` is what every reported number uses; `dev` is for tuning (defaults, presets, scores).
# The draw is part of each slice's seed, so no dev slice equals a test slice, whatever the seeds.
DRAWS = {"test": (), "dev": (1,)}


def make_phantom(n_normal: int, n_abnormal: int, size: int = 128, seed: int = 0, draw: str = "test"):
    """Return an ImageCollection of `n_normal` normal then `n_abnormal` abnormal uint8 slices of `draw`."""

    keys = [(0, i) for i in range(n_normal)] + [(1, i) for i in range(n_abnormal)]
    prefix = "phantom" if draw == "test" else f"phantom-{draw}"
    slices = [render_slice(seed, label, index, size, draw=draw) for label, index in keys]
    return ImageCollection(
        ids=[f"{prefix}/{_LABELS[label]}/{index:05d}" for label, index in keys],
        labels=np.array([label for label, _ in keys], dtype=np.int64),
        images=np.stack([image for image, _, _ in slices]).reshape(-1, size, size),
        masks=np.stack([mask for _, mask, _ in slices]).reshape(-1, size, size),
    )


def render_slice(seed: int, label: int, index: int, size: int = 128, with_lesion: bool = True, draw: str = "test"):
    """Render one slice; returns (image uint8, lesion mask uint8 {0,1}, brain mask bool).

    With ``with_lesion=False`` an abnormal slice is rendered without its lesion, which lets
    tests check that the mask sits exactly where the lesion changed the image.
    """
    anatomy_rng, lesion_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, label, index, *DRAWS[draw]]).spawn(3)
    )
    image, brain, scale = _anatomy(anatomy_rng, size)
    mask = np.zeros((size, size), np.uint8)
    if label == 1 and with_lesion:
        count = 2 if lesion_rng.random() < _SECOND_LESION_PROBABILITY else 1
        for _ in range(count):
            weight = _lesion_weight(lesion_rng, brain, size)
            contrast = math.exp(lesion_rng.uniform(*map(math.log, _LESION_CONTRAST)))
            log_gain = math.log1p(contrast) * lesion_rng.choice((-1.0, 1.0)).item()
            texture = 1.0 + 0.3 * np.clip(_smooth_noise(lesion_rng, size, size / 40), -1, 1)
            image = image * np.exp(log_gain * weight * texture)
            mask |= (weight > 0.5).astype(np.uint8)
    image = image * scale * _bias_field(noise_rng, size)
    sigma = noise_rng.uniform(0.01, 0.04)
    # Magnitude of complex Gaussian noise: Rician in tissue, Rayleigh in the background, as in MRI.
    real = image + sigma * noise_rng.standard_normal(image.shape, dtype=np.float32)
    imaginary = sigma * noise_rng.standard_normal(image.shape, dtype=np.float32)
    image = np.sqrt(real**2 + imaginary**2)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8), mask, brain > 0.5


def _anatomy(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Lesion-free slice in [0, 1] before bias and noise, its soft brain mask, an intensity scale."""
    pixel = 2.0 / size
    grid = (np.arange(size, dtype=np.float32) + 0.5) * pixel - 1.0
    x, y = np.meshgrid(grid, grid)
    # Head pose and shape: offset, small rotation, taller than wide, a slightly uneven outline.
    offset_x, offset_y = rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02)
    u, v = _rotate(x - offset_x, y - offset_y, rng.uniform(-0.08, 0.08))
    half_width, half_height = rng.uniform(0.57, 0.64), rng.uniform(0.74, 0.79)
    radius, theta = cv2.cartToPolar(u / half_width, v / half_height)  # ~4x faster than numpy
    outline = 1.0 + sum(
        rng.uniform(0, 0.03) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)
    )
    rho = radius / outline  # 1 on the brain surface
    edge = 1.2 * pixel / half_width  # soft edges about a pixel wide

    gap, thickness = rng.uniform(0.03, 0.07), rng.uniform(0.05, 0.1)
    skull = _ramp(rho - 1 - gap, edge) * _ramp(1 + gap + thickness - rho, edge)
    skull *= rng.uniform(0.75, 0.95) * (1 + 0.08 * _smooth_noise(rng, size, size / 30))
    brain = _ramp(1 - rho, edge)

    # Cortex: a grey matter ribbon under the surface that also lines the sulci, which run
    # inwards from the surface as dark CSF-filled grooves, meandering and of varied depth.
    depth = 1 - rho
    meander = 3.0 * _smooth_noise(rng, size, size / 12) + _smooth_noise(rng, size, size / 40)
    ridge = 1 - np.cos(int(rng.integers(24, 36)) * theta + meander)  # 0 along a sulcus
    reach = rng.uniform(0.1, 0.18) * (1 + 0.5 * np.clip(_smooth_noise(rng, size, size / 20), -1, 1))
    sulci = 0.5 * np.exp(-ridge / 0.15) * _ramp(reach - depth, 0.05)
    ribbon = rng.uniform(0.06, 0.1) * (1 + 0.6 * _smooth_noise(rng, size, size / 40))
    lining = np.exp(-ridge / 0.6) * _ramp(reach + ribbon - depth, 0.05)
    grey = np.maximum(_ramp(ribbon - depth, edge), lining)

    # Lateral ventricles: two crescents either side of the midline, closer at the front, and
    # the interhemispheric fissure as a dark line along the midline.
    ventricle_scale = rng.uniform(0.7, 1.3)
    tilt = rng.uniform(0.1, 0.35)
    ventricles = np.zeros_like(x)
    for side in (-1, 1):
        a, b = _rotate(u - side * 0.13, v + 0.03, -side * tilt)
        body = _ramp(1 - np.hypot(a / 0.045, b / 0.22) / ventricle_scale, 0.3)
        indent = _ramp(1 - np.hypot((a - side * 0.05) / 0.04, b / 0.12) / ventricle_scale, 0.3)
        ventricles = np.maximum(ventricles, body * (1 - indent))
    fissure = 0.7 * np.exp(-((u / (1.2 * pixel)) ** 2)) * _ramp(np.abs(v) / half_height - 0.4, 0.1)
    csf = np.maximum.reduce([sulci, ventricles, fissure])

    # T1-like (white brighter than grey) or FLAIR-like (grey brighter); CSF stays dark in both.
    white, grey_level = rng.uniform(0.55, 0.65), rng.uniform(0.34, 0.44)
    if rng.random() < 0.3:
        white, grey_level = grey_level, white
    tissue = white * (1 - grey) + grey_level * grey
    tissue *= 1 + 0.04 * _smooth_noise(rng, size, size / 60)
    tissue = tissue * (1 - csf) + rng.uniform(0.05, 0.12) * csf
    return brain * tissue + skull, brain, rng.uniform(0.85, 1.0)


def _lesion_weight(rng: np.random.Generator, brain: np.ndarray, size: int) -> np.ndarray:
    """Soft [0, 1] map of one irregular lesion well inside the brain; > 0.5 is the lesion proper."""
    low, high = (max(_MIN_LESION_RADIUS, r * size / 128) for r in _LESION_RADIUS_128)
    radius = rng.uniform(low, high)
    # Centre on a pixel at least a radius inside the brain (the deepest pixel if none is).
    inside = cv2.distanceTransform((brain > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    candidates = np.argwhere(inside > 1.3 * radius + 1)
    if len(candidates) == 0:
        candidates = np.argwhere(inside == inside.max())
    row, col = candidates[rng.integers(len(candidates))].tolist()
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    a, b = _rotate(x - col, y - row, rng.uniform(0, np.pi))
    # Boundary made irregular by smooth noise; at the centre the noise cannot push it outside.
    jitter = np.clip(_smooth_noise(rng, size, max(radius / 2, 1.0)), -1, 1)
    level = np.hypot(a, b / rng.uniform(0.6, 1.0)) / radius - 0.3 * jitter
    soft_edge = rng.uniform(1.0, 3.0) * size / 128  # pixels from weight 0 to 1
    weight = _smoothstep((1 - level) * radius / soft_edge + 0.5)
    return weight * (brain > 0.5)


def _bias_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth multiplicative intensity inhomogeneity, as from an MRI receive coil."""
    coarse = rng.uniform(-1, 1, (3, 3)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return 1.0 + rng.uniform(0.05, 0.2) * field


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-blurred white noise with unit standard deviation.

    Wide blurs run on a coarser grid and are upsampled: same look, a fraction of the time.
    """
    step = max(1, int(sigma / 2))
    coarse = math.ceil(size / step)
    noise = rng.standard_normal((coarse, coarse), dtype=np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma / step)
    if step > 1:
        noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_LINEAR)
    return noise / (noise.std() + 1e-6)


def _rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame rotated by `angle` radians."""
    cos, sin = math.cos(angle), math.sin(angle)
    return cos * x + sin * y, cos * y - sin * x


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    """Soft step: 0 below -width/2, 1 above width/2 (anti-aliased region edges)."""
    return np.clip(x / width + 0.5, 0.0, 1.0)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)
