"""Synthetic anomalies made from the training normals (issue 27), so a model can learn what a departure looks like.

After DRAEM (Zavrtanik et al., ICCV 2021: Perlin-noise masks, foreign texture, opacity), NSA (Schlüter et al.,
ECCV 2022: patches of other normals, restricted to the object) and FPI (Tan et al. 2020: interpolation with a
foreign source). A batch-level tf op, mapped over the training batches in the tf.data pipeline (after the
cache, shuffle and augmentation): `synthetic_batches(dataset, seed)` yields (x̃, mask, x) with x̃ in [-1, 1],
mask [B, S, S] in {0, 1} and x the clean batch. Every draw is a stateless random op seeded from the run's seed
and the epoch's iteration of the pipeline, so a seed gives the same corruptions and each epoch new ones.

Per image:
- clean with probability CLEAN_FRACTION (mask all zero, x̃ = x);
- a mask, either Perlin noise (random cell counts per axis, as DRAEM) thresholded at a random quantile, or a
  random ellipse or polygon (centred on a foreground pixel); its area is drawn log-uniformly from COVERAGE of
  the foreground, so masks range from a few pixels to half the object;
- restricted to the foreground: Otsu's threshold on each pixel's colour distance from the border's median
  colour, holes closed; the whole image when the border is mixed (a texture), or the foreground is tiny or
  everything;
- a source: another normal of the batch (shifted, resized, flipped, rotated by 90° steps), a procedural
  texture (Perlin noise, stripes, checker or a solid colour, in random colours), or the image's own intensity
  and colour changed (a random gain and offset per channel);
- alpha blending with a feathered mask at a random opacity α: x̃ = x + α·m̃·(source − x), FPI's interpolation
  inside the mask. No Poisson blending: alpha blending is one tf op, and feathering already hides the seam;
- visible: a source whose corruption would change the mask's pixels by less than MIN_CHANGE on average is not
  drawn; the source is drawn uniformly among the visible ones, and the sample is labelled clean only when none
  is. Another normal of a texture is the same texture, and a gain near 1 at a low opacity changes nothing;
  labelled, these taught the map to fire on normal-looking pixels (on the magnetic tiles 46 % of the
  other-image corruptions changed their mask by less than 0.05 on average, 24 % of the intensity changes on
  every dev set); simply dropped, they left up to 7 of 8 tile samples of a batch clean.
"""

import math

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
CLEAN_FRACTION = 0.5  # DRAEM leaves half its training samples unchanged
COVERAGE = (0.01, 0.5)  # a mask's share of the foreground, drawn log-uniformly
OPACITY = (0.2, 1.0)  # DRAEM's β in [0, 0.8] keeps that share of the original: α = 1 − β
PERLIN_SHARE = 0.6  # masks from Perlin noise; the rest are ellipses and polygons
SOURCES = ("image", "texture", "intensity")
MIN_CELL = 8  # the finest Perlin cell, in pixels (DRAEM: 2^5 cells at 256 px)
POLYGON_VERTICES = 7
OTSU_BINS = 64
BORDER_AGREEMENT = 0.9  # this share of the border must be on the background side of Otsu's threshold
FOREGROUND_RANGE = (0.05, 0.95)  # a foreground outside this share of the image falls back to the whole image
MIN_CHANGE = 0.1  # mean |x̃ − x| inside the mask (on [-1, 1], about 13 grey levels) below which a sample is clean


def synthetic_batches(dataset, seed):
    """(x̃, mask, x) batches from a dataset of image batches, new corruptions each epoch, the same for a seed."""
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    pairs = tf.data.Dataset.zip((dataset, draws))
    return pairs.map(lambda images, draw: synthesize(images, draw), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def synthesize(images, seed, sources=SOURCES, clean_fraction=CLEAN_FRACTION):
    """Images [B, S, S, C] in [-1, 1] and a stateless seed [2] -> (x̃, mask [B, S, S], images): see the module."""
    images = tf.convert_to_tensor(images, tf.float32)
    seeds = iter(tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 12)))
    count, size = tf.shape(images)[0], images.shape[1]

    foreground = foreground_mask(images)
    coverage = _log_uniform([count], COVERAGE, next(seeds))
    use_perlin = tf.random.stateless_uniform([count], next(seeds)) < PERLIN_SHARE
    masks = tf.where(use_perlin[:, None, None], perlin_masks(foreground, coverage, next(seeds)),
                     shape_masks(foreground, coverage, next(seeds)))
    keep = tf.random.stateless_uniform([count], next(seeds)) >= clean_fraction
    masks = masks * tf.cast(keep, tf.float32)[:, None, None]

    candidates = {"image": lambda: other_images(images, next(seeds)),
                  "texture": lambda: textures(images, next(seeds)),
                  "intensity": lambda: intensity_change(images, next(seeds))}
    pool = tf.stack([candidates[name]() for name in sources], axis=1)  # [B, sources, S, S, C]

    opacity = tf.random.stateless_uniform([count, 1, 1, 1, 1], next(seeds), *OPACITY)
    feathered = feather(masks, max(1, size // 32))[:, None, ..., None]
    blended = tf.clip_by_value(images[:, None] + opacity * feathered * (pool - images[:, None]), -1.0, 1.0)
    change = tf.reduce_max(tf.abs(blended - images[:, None]), axis=-1)  # [B, sources, S, S]
    marked = tf.reduce_sum(masks, axis=[1, 2])[:, None]
    visible = tf.reduce_sum(change * masks[:, None], axis=[2, 3]) >= MIN_CHANGE * marked  # [B, sources]
    # A source drawn uniformly among those whose corruption would be visible (none: the sample stays clean).
    priority = tf.random.stateless_uniform([count, len(sources)], next(seeds))
    kind = tf.argmax(tf.where(visible, priority, -1.0), axis=1, output_type=tf.int32)
    masks = masks * tf.cast(tf.reduce_any(visible, axis=1), tf.float32)[:, None, None]
    augmented = tf.gather(blended, kind, batch_dims=1)
    augmented = tf.where((tf.reduce_max(masks, axis=[1, 2]) > 0)[:, None, None, None], augmented, images)
    return augmented, masks, images


def _log_uniform(shape, bounds, seed):
    low, high = math.log(bounds[0]), math.log(bounds[1])
    return tf.exp(tf.random.stateless_uniform(shape, seed, low, high))


def foreground_mask(images):
    """[B, S, S] 1 on the object, else 1 everywhere: see `foreground_or_whole`."""
    return foreground_or_whole(images)[0]


def foreground_or_whole(images):
    """([B, S, S] foreground, [B] whether one was found) of images in [-1, 1].

    The object is what differs from the background's colour, taken as the median colour of the image border:
    Otsu's threshold on each pixel's distance from it (a dark or a bright background, a green leaf on grey
    paper alike), holes closed. The whole image counts when the border is not one colour (a texture, an
    object filling the frame) or the object is tiny or everything (FOREGROUND_RANGE).
    """
    size = images.shape[1]
    border = tf.concat([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)  # [B, 4S, C]
    background = tf.sort(border, axis=1)[:, 2 * size][:, None, None, :]  # the median colour, per channel
    distance = tf.norm(images - background, axis=-1) / (2.0 * math.sqrt(images.shape[-1]))  # in [0, 1]
    far = tf.cast(distance > otsu_threshold(distance)[:, None, None], tf.float32)
    border_far = tf.reduce_mean(tf.concat([far[:, 0], far[:, -1], far[:, :, 0], far[:, :, -1]], axis=1), axis=1)
    radius = max(1, size // 32)  # closing (dilate, then erode) seals gaps in the outline before the holes are filled
    closed = -tf.nn.max_pool2d(-tf.nn.max_pool2d(far[..., None], 2 * radius + 1, 1, "SAME"), 2 * radius + 1, 1, "SAME")
    foreground = fill_holes(closed[..., 0])
    share = tf.reduce_mean(foreground, axis=[1, 2])
    found = (border_far <= 1.0 - BORDER_AGREEMENT) & (share >= FOREGROUND_RANGE[0]) & (share <= FOREGROUND_RANGE[1])
    return tf.where(found[:, None, None], foreground, tf.ones_like(foreground)), found


def fill_holes(objects, passes=4):
    """[B, S, S] {0, 1} -> the same with enclosed background filled.

    Background counts as outside where a straight line to one of the four borders meets no object (four
    cumulative sums), then grows `passes` 3×3 steps through background, so bays reached around a corner
    stay open. A full flood fill (S passes) cost 30 ms an image at 64 px on two cores; this about 1 ms.
    """
    open_pixels = 1.0 - objects
    seen = [tf.cumsum(objects, axis=axis, reverse=reverse) > 0 for axis in (1, 2) for reverse in (False, True)]
    outside = open_pixels * tf.cast(~(seen[0] & seen[1] & seen[2] & seen[3]), tf.float32)
    for _ in range(passes):
        outside = tf.nn.max_pool2d(outside[..., None], 3, 1, "SAME")[..., 0] * open_pixels
    return 1.0 - outside


def otsu_threshold(grey):
    """Per-image Otsu threshold of [B, S, S] intensities in [0, 1] (OTSU_BINS bins): max between-class variance."""
    bins = tf.cast(tf.minimum(grey * OTSU_BINS, OTSU_BINS - 1), tf.int32)
    histogram = tf.reduce_sum(tf.one_hot(tf.reshape(bins, [tf.shape(grey)[0], -1]), OTSU_BINS), axis=1)
    probability = histogram / tf.reduce_sum(histogram, axis=1, keepdims=True)
    centres = (tf.range(OTSU_BINS, dtype=tf.float32) + 0.5) / OTSU_BINS
    weight = tf.cumsum(probability, axis=1)
    mean = tf.cumsum(probability * centres, axis=1)
    total = mean[:, -1:]
    between = tf.math.divide_no_nan(tf.square(total * weight - mean), weight * (1.0 - weight))
    return (tf.cast(tf.argmax(between, axis=1), tf.float32) + 1.0) / OTSU_BINS


def perlin_noise(size, cells_y, cells_x, seed):
    """[size, size] Perlin gradient noise with cells_y × cells_x cells (scalars; about [-1, 1])."""
    angles = tf.random.stateless_uniform(tf.stack([cells_y + 1, cells_x + 1]), seed, 0.0, 2.0 * math.pi)
    gradients = tf.stack([tf.sin(angles), tf.cos(angles)], axis=-1)
    position_y = tf.range(size, dtype=tf.float32) / size * tf.cast(cells_y, tf.float32)
    position_x = tf.range(size, dtype=tf.float32) / size * tf.cast(cells_x, tf.float32)
    cell_y, cell_x = tf.meshgrid(tf.cast(position_y, tf.int32), tf.cast(position_x, tf.int32), indexing="ij")
    fraction_y, fraction_x = tf.meshgrid(position_y % 1.0, position_x % 1.0, indexing="ij")

    def corner(dy, dx):
        gradient = tf.gather_nd(gradients, tf.stack([cell_y + dy, cell_x + dx], axis=-1))
        return gradient[..., 0] * (fraction_y - dy) + gradient[..., 1] * (fraction_x - dx)

    def fade(t):
        return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)

    top = corner(0, 0) + fade(fraction_x) * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + fade(fraction_x) * (corner(1, 1) - corner(1, 0))
    return math.sqrt(2.0) * (top + fade(fraction_y) * (bottom - top))


def random_perlin(count, size, seed):
    """[count, size, size] Perlin noise, each with its own cell counts per axis: 2^k, k uniform, cells ≥ MIN_CELL px."""
    largest = max(0, int(math.log2(size // MIN_CELL)))
    exponents = tf.random.stateless_uniform([count, 2], seed, 0, largest + 1, tf.int32)
    seeds = tf.random.experimental.stateless_split(seed, count)

    def one(arguments):
        exponent, one_seed = arguments
        return perlin_noise(size, 2 ** exponent[0], 2 ** exponent[1], one_seed)

    return tf.map_fn(one, (exponents, seeds), fn_output_signature=tf.float32)


def perlin_masks(foreground, coverage, seed):
    """Perlin noise above the quantile that leaves `coverage` of each foreground marked, inside the foreground."""
    count, size = tf.shape(foreground)[0], foreground.shape[1]
    noise = random_perlin(count, size, seed)
    flat = tf.reshape(tf.where(foreground > 0, noise, -10.0), [count, -1])
    ranked = tf.sort(flat, axis=1, direction="DESCENDING")
    area = tf.reduce_sum(foreground, axis=[1, 2])
    index = tf.clip_by_value(tf.cast(coverage * area, tf.int32), 0, size * size - 1)
    threshold = tf.gather(ranked, index, batch_dims=1)[:, None, None]
    return tf.cast(noise >= threshold, tf.float32) * foreground


def shape_masks(foreground, coverage, seed):
    """An ellipse or a star-shaped polygon of `coverage` of the foreground's area, centred on a foreground pixel."""
    count, size = tf.shape(foreground)[0], foreground.shape[1]
    seeds = iter(tf.unstack(tf.random.experimental.stateless_split(seed, 5)))
    centre = tf.random.stateless_categorical(tf.math.log(tf.reshape(foreground, [count, -1]) + 1e-9), 1, next(seeds))[:, 0]
    centre_y = tf.cast(centre // size, tf.float32)[:, None, None]
    centre_x = tf.cast(centre % size, tf.float32)[:, None, None]
    grid_y, grid_x = tf.meshgrid(tf.range(size, dtype=tf.float32), tf.range(size, dtype=tf.float32), indexing="ij")
    dy, dx = grid_y[None] - centre_y, grid_x[None] - centre_x
    area = coverage * tf.reduce_sum(foreground, axis=[1, 2])
    aspect, angle, choice = tf.unstack(tf.random.stateless_uniform([3, count], next(seeds)))
    aspect, angle = (0.3 + 0.7 * aspect)[:, None, None], (math.pi * angle)[:, None, None]
    # ellipse of semi-axes a and a·aspect: π a² aspect = area
    semi = tf.sqrt(area / (math.pi * aspect[:, 0, 0]))[:, None, None]
    along = dx * tf.cos(angle) + dy * tf.sin(angle)
    across = -dx * tf.sin(angle) + dy * tf.cos(angle)
    ellipse = tf.square(along / semi) + tf.square(across / (semi * aspect)) <= 1.0
    # polygon: vertices at evenly spaced angles and random radii; the edge between two vertices is straight
    radii = tf.random.stateless_uniform([count, POLYGON_VERTICES], next(seeds), 0.4, 1.0)
    step = 2.0 * math.pi / POLYGON_VERTICES
    scale = tf.sqrt(area / (0.5 * POLYGON_VERTICES * math.sin(step) * tf.reduce_mean(radii * tf.roll(radii, -1, 1), 1)))
    radii = radii * scale[:, None]
    phi = (tf.atan2(dy, dx) - angle) % (2.0 * math.pi)
    vertex = tf.minimum(tf.cast(phi // step, tf.int32), POLYGON_VERTICES - 1)
    first = tf.gather(radii, vertex, batch_dims=1)
    second = tf.gather(radii, (vertex + 1) % POLYGON_VERTICES, batch_dims=1)
    offset = phi - tf.cast(vertex, tf.float32) * step
    edge = first * second * math.sin(step) / (first * tf.sin(offset) + second * tf.sin(step - offset))
    polygon = tf.sqrt(tf.square(dx) + tf.square(dy)) <= edge
    shape = tf.where((choice < 0.5)[:, None, None], ellipse, polygon)
    return tf.cast(shape, tf.float32) * foreground


def other_images(images, seed):
    """Each image's source: another image of the batch, zoomed in (0.6-1), shifted, flipped and turned by 90° steps."""
    count = tf.shape(images)[0]
    seeds = iter(tf.unstack(tf.random.experimental.stateless_split(seed, 4)))
    offset = 1 + tf.cast(tf.random.stateless_uniform([count], next(seeds)) * tf.cast(count - 1, tf.float32), tf.int32)
    partners = tf.gather(images, (tf.range(count) + tf.minimum(offset, tf.maximum(count - 1, 1))) % count)
    scale, start_y, start_x, flip_y, flip_x = tf.unstack(tf.random.stateless_uniform([5, count], next(seeds)))
    scale = 0.6 + 0.4 * scale
    top, left = start_y * (1.0 - scale), start_x * (1.0 - scale)
    bottom, right = top + scale, left + scale
    top, bottom = tf.where(flip_y < 0.5, top, bottom), tf.where(flip_y < 0.5, bottom, top)
    left, right = tf.where(flip_x < 0.5, left, right), tf.where(flip_x < 0.5, right, left)
    size = images.shape[1]
    moved = tf.image.crop_and_resize(partners, tf.stack([top, left, bottom, right], axis=1), tf.range(count), [size, size])
    turns = tf.random.stateless_uniform([count], next(seeds), 0, 4, tf.int32)
    rotations = tf.stack([tf.image.rot90(moved, k) for k in range(4)], axis=1)
    return tf.gather(rotations, turns, batch_dims=1)


def textures(images, seed):
    """Each image's source: a procedural texture between two random colours (Perlin, stripes, checker, solid)."""
    count, size, channels = tf.shape(images)[0], images.shape[1], images.shape[-1]
    seeds = iter(tf.unstack(tf.random.experimental.stateless_split(seed, 5)))
    colours = tf.random.stateless_uniform([2, count, 1, 1, channels], next(seeds), -1.0, 1.0)
    perlin = (random_perlin(count, size, next(seeds)) + 1.0) / 2.0
    angle, frequency, phase = tf.unstack(tf.random.stateless_uniform([3, count, 1, 1], next(seeds)))
    grid_y, grid_x = tf.meshgrid(tf.range(size, dtype=tf.float32), tf.range(size, dtype=tf.float32), indexing="ij")
    period = size / (2.0 + 14.0 * frequency)  # 2 to 16 stripes across the image
    along = grid_x * tf.cos(math.pi * angle) + grid_y * tf.sin(math.pi * angle)
    stripes = (tf.sin(2.0 * math.pi * (along / period + phase)) + 1.0) / 2.0
    across = -grid_x * tf.sin(math.pi * angle) + grid_y * tf.cos(math.pi * angle)
    checker = tf.cast(tf.math.floormod(tf.floor(along / period) + tf.floor(across / period), 2.0), tf.float32)
    solid = tf.zeros_like(stripes)
    patterns = tf.stack([perlin, stripes, checker, solid], axis=1)  # [B, 4, S, S]
    kind = tf.random.stateless_uniform([count], next(seeds), 0, 4, tf.int32)
    pattern = tf.gather(patterns, kind, batch_dims=1)[..., None]
    return colours[0] + pattern * (colours[1] - colours[0])


def intensity_change(images, seed):
    """Each image's source: itself with a random gain (0.4-1.6) and offset (±0.6) per channel."""
    count, channels = tf.shape(images)[0], images.shape[-1]
    gain_seed, offset_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    gain = tf.random.stateless_uniform([count, 1, 1, channels], gain_seed, 0.4, 1.6)
    offset = tf.random.stateless_uniform([count, 1, 1, channels], offset_seed, -0.6, 0.6)
    return tf.clip_by_value(gain * images + offset, -1.0, 1.0)


def feather(masks, radius):
    """[B, S, S] masks softened inward over `radius` pixels: a box blur kept inside the mask, so no seam shows."""
    blurred = tf.nn.avg_pool2d(masks[..., None], 2 * radius + 1, 1, "SAME")[..., 0]
    return blurred * masks
