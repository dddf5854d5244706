"""A synthetic VOC-format data set for the demo: textured objects on textured backgrounds, with cues.

Six object classes whose appearance overlaps in part: they share colours in pairs and differ in
texture and shape, and every instance jitters its colours and fades its texture by a random amount.
Backgrounds are muted, textured and cluttered with unlabelled muted shapes and with decoys painted
in an object class's colours (but not its texture), so that neither colour nor shape alone is
enough. 1–3 objects per image, from small to frame-filling, some touching or occluding each other.
Illumination gradients, smooth shading, a colour cast, blur and sensor noise vary per image. The
ground truth marks a thin band on every region boundary as 255 (ignore), as VOC does.

Localization cues imitate the SEC cues (measured against the VOC ground truth with tools/seed_quality.py):
  - foreground: per object a CAM-like score, a Gaussian bump around a peak that sits at the object's
    core or, for half of the objects, on an off-centre "discriminative" part (its width capped, so
    large objects are only partly covered), times the blurred object mask (CAMs bleed over the
    boundary), and for most objects a second bump on the surroundings (context that co-occurs with
    the class); the cells above a random fraction of the class's maximum score are seeds.
  - background: the 10 % of cells of lowest saliency (SEC's rule). Saliency is high on objects and
    decays with the distance from them; it is uneven across an object, weak for some objects and
    for objects filling much of the frame, and smooth clutter saliency and a mild border prior come
    on top — so background seeds lie mostly far from objects and a few fall on objects.
  - a cell carries one class: foreground wins over background, the higher score between classes.
With the defaults (CueParams) 200 images give, on the 21×21 grid: background precision ~93 %,
density ~10 %; foreground precision ~68 %, recall ~35 % (SEC on VOC: 93.3, 9.9, 68.3, 33.2).
Cue (row, col) of a g×g grid is pixel (row·(S−1)/(g−1), col·(S−1)/(g−1)) of the S×S image
(aligned corners: for g = 21 and a 161-pixel warp, pixel (8·row, 8·col)).

Everything is drawn from numpy Generators seeded by (seed, split, index): the same arguments give
the same bytes.
"""
import colorsys
import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from dsrg.resize import aligned_corner_indices
from dsrg.voc import IGNORE_LABEL

CLASS_NAMES = ("background", "disc", "box", "triangle", "star", "cross", "blob")
SPLIT_CODES = {"train": 1, "val": 2}


@dataclass(frozen=True)
class ObjectClass:
    shape: str
    colour: tuple  # RGB 0..1 of the light phase of the texture
    shade: tuple  # RGB 0..1 of the dark phase
    texture: str
    period: float  # texture period in pixels at 160-pixel image size


# Classes share colours in pairs, as real classes share appearance: disc and cross are both red
# (with dark red stripes vs pink rings), box and blob both green (with dark green checks vs dark teal
# speckle); triangle (orange, dots) and star (blue-violet, diagonal stripes) stand alone, but their
# jittered, faded versions come close to the muted clutter. Texture, shape and the second colour
# tell a pair apart, and instance jitter blurs even those.
OBJECT_CLASSES = (
    ObjectClass("ellipse", (0.90, 0.20, 0.16), (0.42, 0.05, 0.06), "stripes", 7.0),
    ObjectClass("rectangle", (0.25, 0.72, 0.25), (0.06, 0.32, 0.10), "checker", 9.0),
    ObjectClass("triangle", (0.92, 0.70, 0.20), (0.50, 0.28, 0.08), "dots", 8.0),
    ObjectClass("star", (0.35, 0.40, 0.85), (0.08, 0.08, 0.30), "diagonal", 6.0),
    ObjectClass("cross", (0.88, 0.24, 0.20), (0.96, 0.70, 0.66), "rings", 8.0),
    ObjectClass("blob", (0.28, 0.70, 0.28), (0.02, 0.26, 0.28), "speckle", 3.0),
)


@dataclass(frozen=True)
class CueParams:
    """Knobs of the synthetic cues (defaults calibrated against the SEC cues on VOC, see the module doc)."""
    background_fraction: float = 0.10  # share of cells that become background seeds (lowest saliency)
    discriminative_part_probability: float = 0.5  # the CAM peak sits off-centre on a part of the object
    cam_width: tuple = (0.35, 0.75)  # Gaussian bump std, in units of the object's equivalent radius
    cam_width_cap: float = 0.15  # ... but at most this share of the image side (large objects: partial CAMs)
    cam_bleed: tuple = (0.30, 0.70)  # blur of the object mask (CAM bleeding), same units
    cam_leak: tuple = (0.0, 0.3)  # share of the bump that ignores the object mask
    context_probability: float = 0.8  # the CAM also fires on the surroundings next to the object
    context_strength: tuple = (0.7, 1.0)  # its peak relative to the object's
    cam_threshold: tuple = (0.25, 0.55)  # seed cells score above this fraction of the class maximum
    instance_miss_probability: float = 0.2  # one of several same-class objects left out of the CAM
    weak_saliency_probability: float = 0.2  # an object that saliency barely sees
    large_object_share: float = 0.4  # an object's saliency fades as its area share approaches this
    saliency_unevenness: tuple = (0.2, 0.8)  # how much saliency varies across an object
    clutter_saliency: tuple = (0.3, 1.0)  # amplitude of the smooth clutter saliency
    border_prior: tuple = (0.8, 1.0)  # saliency factor at the image border (saliency's border prior)
    border_width: float = 0.2  # share of the image side over which the border prior fades out


@functools.lru_cache(maxsize=4)
def _pixel_grid(size):
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


def _local_coordinates(size, centre, angle):
    """Pixel coordinates rotated by `angle` around `centre`: (u, v) in pixels."""
    rows, cols = _pixel_grid(size)
    dy, dx = rows - np.float32(centre[0]), cols - np.float32(centre[1])
    cos, sin = np.cos(angle), np.sin(angle)
    return cos * dx + sin * dy, -sin * dx + cos * dy


def shape_mask(kind, size, centre, radius, angle, aspect, rng):
    """A boolean S×S mask of a shape of about `radius` pixels, rotated by `angle`."""
    u, v = _local_coordinates(size, centre, angle)
    u, v = u / radius, v / (radius * aspect)
    if kind == "ellipse":
        return u * u + v * v <= 1.0
    if kind == "rectangle":
        return (np.abs(u) <= 0.9) & (np.abs(v) <= 0.9)
    if kind == "cross":
        arm = 0.34
        return ((np.abs(u) <= 1.0) & (np.abs(v) <= arm)) | ((np.abs(v) <= 1.0) & (np.abs(u) <= arm))
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    if kind == "triangle":
        sector = np.mod(phi, 2 * np.pi / 3) - np.pi / 3
        return rho * np.cos(sector) <= 0.6
    if kind == "star":
        inner = 0.45
        sector = np.abs(np.mod(phi, 2 * np.pi / 5) - np.pi / 5) / (np.pi / 5)  # 0 at a tip, 1 between tips
        return rho <= 1.05 - (1.05 - inner) * sector
    if kind == "blob":
        edge = np.ones_like(phi)
        for harmonic in (2, 3, 5):
            edge += rng.uniform(0.06, 0.16) * np.cos(harmonic * phi + rng.uniform(0, 2 * np.pi))
        return rho <= 0.9 * edge
    raise ValueError(f"unknown shape {kind!r}")


def texture_pattern(kind, size, centre, angle, period, rng):
    """A texture in [0, 1] over the S×S image, in the object's rotated frame."""
    u, v = _local_coordinates(size, centre, angle)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "stripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * v / period + phase)
    if kind == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if kind == "dots":
        du = np.mod(u + phase, period) - period / 2
        dv = np.mod(v + phase, period) - period / 2
        return (np.hypot(du, dv) > 0.3 * period).astype(np.float32)
    if kind == "diagonal":
        return (np.sin(2 * np.pi * (u + v) / (period * np.sqrt(2)) + phase) > 0).astype(np.float32)
    if kind == "rings":
        return 0.5 + 0.5 * np.cos(2 * np.pi * np.hypot(u, v) / period + phase)
    if kind == "speckle":
        noise = rng.random((size, size)).astype(np.float32)
        noise = ndimage.gaussian_filter(noise, period / 3)
        return np.clip((noise - noise.mean()) / (4 * noise.std() + 1e-6) + 0.5, 0, 1)
    raise ValueError(f"unknown texture {kind!r}")


def _smooth_field(rng, size, cells, channels=1):
    """A smooth random field in about [0, 1]: `cells`×`cells` random values, bicubic resize to S×S×channels."""
    coarse = rng.random((channels, cells, cells)).astype(np.float32)
    field = np.stack([np.asarray(Image.fromarray(plane, mode="F").resize((size, size), Image.Resampling.BICUBIC))
                      for plane in coarse], axis=-1)
    return np.clip(field, 0, 1)


def _muted_colour(rng):
    hue = rng.random()
    saturation = rng.uniform(0.04, 0.28)
    value = rng.uniform(0.30, 0.80)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32)


def _jitter(colour, rng):
    """An instance's version of a class colour: small hue shift, some saturation/brightness change."""
    hue, saturation, value = colorsys.rgb_to_hsv(*colour)
    hue = (hue + rng.uniform(-0.05, 0.05)) % 1.0
    saturation = np.clip(saturation * rng.uniform(0.55, 1.05), 0, 1)
    value = np.clip(value * rng.uniform(0.65, 1.1), 0, 1)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32)


def render_background(rng, size):
    """A muted, textured, cluttered S×S×3 background in [0, 1]."""
    scale = size / 160.0
    mix = _smooth_field(rng, size, int(rng.integers(3, 7)))
    image = (1 - mix) * _muted_colour(rng) + mix * _muted_colour(rng)
    style = rng.integers(0, 4)
    if style == 0:  # fine grain
        image = image * (1 + 0.12 * (ndimage.gaussian_filter(rng.random((size, size, 1)), 0.8) - 0.5) * 4)
    elif style == 1:  # soft stripes at a random orientation
        u, _ = _local_coordinates(size, (size / 2, size / 2), rng.uniform(0, np.pi))
        image = image * (1 + 0.10 * np.sin(2 * np.pi * u / (rng.uniform(10, 28) * scale)))[..., None]
    elif style == 2:  # tiles
        tile = rng.uniform(14, 30) * scale
        u, v = _local_coordinates(size, (0, 0), rng.uniform(-0.3, 0.3))
        image = image * (1 + 0.08 * ((np.floor(u / tile) + np.floor(v / tile)) % 2 - 0.5))[..., None]
    for _ in range(rng.integers(0, 5)):  # unlabelled muted clutter with object-like shapes
        kind = ("ellipse", "rectangle", "triangle", "blob")[rng.integers(0, 4)]
        mask = shape_mask(kind, size, rng.uniform(0, size, 2), rng.uniform(0.08, 0.25) * size,
                          rng.uniform(0, np.pi), rng.uniform(0.5, 1.0), rng)
        pattern = texture_pattern(("stripes", "speckle")[rng.integers(0, 2)], size, rng.uniform(0, size, 2),
                                  rng.uniform(0, np.pi), rng.uniform(5, 12) * scale, rng)
        colour = _muted_colour(rng)
        image[mask] = (colour * (0.85 + 0.3 * pattern[..., None]))[mask]
    for _ in range(rng.integers(0, 3)):  # decoys: unlabelled shapes in an object class's colours
        spec = OBJECT_CLASSES[rng.integers(0, len(OBJECT_CLASSES))]
        kind = ("ellipse", "rectangle", "blob")[rng.integers(0, 3)]
        centre = rng.uniform(0, size, 2)
        mask = shape_mask(kind, size, centre, rng.uniform(0.06, 0.18) * size, rng.uniform(0, np.pi),
                          rng.uniform(0.3, 0.8), rng)
        pattern = texture_pattern(("stripes", "speckle")[rng.integers(0, 2)], size, centre, rng.uniform(0, np.pi),
                                  rng.uniform(10, 20) * scale, rng)[..., None]
        light, dark = _jitter(spec.colour, rng), _jitter(spec.shade, rng)
        contrast = rng.uniform(0.1, 0.4)
        image[mask] = (dark + (light - dark) * (1 - contrast + contrast * pattern))[mask]
    return image


def place_objects(rng, size, max_objects=3, tries=12, min_visible_share=0.4):
    """Draw 1–`max_objects` objects; returns [(class index, full mask, paint)] in painting order.

    Later objects are painted over earlier ones. A placement is redrawn when the new object is
    smaller than ~200 pixels (at 160 px), when more than 60 % of it would lie on earlier objects,
    or when it would leave an earlier object with less than `min_visible_share` of its area
    visible; after `tries` failures the object is left out. The first object is drawn until one fits.
    """
    scale = size / 160.0
    min_area = 200 * scale ** 2
    count = int(rng.choice(np.arange(1, max_objects + 1), p=_object_count_probabilities(max_objects)))
    objects, visible, occupied = [], [], np.zeros((size, size), dtype=bool)
    attempt = 0
    while len(objects) < count and attempt < tries * count or not objects:
        attempt += 1
        class_index = int(rng.integers(1, len(CLASS_NAMES)))
        spec = OBJECT_CLASSES[class_index - 1]
        radius = np.exp(rng.uniform(np.log(0.09), np.log(0.55))) * size
        centre = rng.uniform(0.12 * size, 0.88 * size, 2)
        angle = rng.uniform(0, 2 * np.pi)
        aspect = rng.uniform(0.6, 1.0) if spec.shape in ("ellipse", "rectangle", "blob") else rng.uniform(0.85, 1.0)
        mask = shape_mask(spec.shape, size, centre, radius, angle, aspect, rng)
        area = mask.sum()
        if area < min_area or (mask & occupied).sum() > 0.6 * area:
            continue
        remaining = [(shown & ~mask).sum() for shown in visible]
        if any(left < max(min_visible_share * full.sum(), min_area) for left, (_, full, _) in zip(remaining, objects)):
            continue
        visible = [shown & ~mask for shown in visible] + [mask]
        objects.append((class_index, mask, (spec, centre, angle, radius)))
        occupied |= mask
    return objects


def _object_count_probabilities(max_objects):
    weights = np.array([0.35, 0.40, 0.25][:max_objects] + [0.25] * max(0, max_objects - 3))
    return weights / weights.sum()


def paint_object(image, rng, size, spec, centre, angle, mask):
    period = spec.period * (size / 160.0) * rng.uniform(0.8, 1.25)
    pattern = texture_pattern(spec.texture, size, centre, angle, period, rng)[..., None]
    light, dark = _jitter(spec.colour, rng), _jitter(spec.shade, rng)
    contrast = rng.uniform(0.35, 1.0)  # faded textures: some instances show their pattern only faintly
    image[mask] = (dark + (light - dark) * (0.5 * (1 - contrast) + contrast * pattern))[mask]


def boundary_band(label_map):
    """Pixels whose 3×3 neighbourhood holds more than one label (a band about 2 pixels wide)."""
    return ndimage.maximum_filter(label_map, 3) != ndimage.minimum_filter(label_map, 3)


def render_sample(rng, size):
    """One image: (RGB uint8 S×S×3, ground truth uint8 S×S with 255 band, [(class, visible mask)])."""
    image = render_background(rng, size)
    objects = place_objects(rng, size)
    label_map = np.zeros((size, size), dtype=np.uint8)
    instance_map = np.full((size, size), -1, dtype=np.int32)
    for number, (class_index, mask, (spec, centre, angle, _)) in enumerate(objects):
        paint_object(image, rng, size, spec, centre, angle, mask)
        label_map[mask] = class_index
        instance_map[mask] = number
    instances = [(class_index, instance_map == number) for number, (class_index, _, _) in enumerate(objects)]
    instances = [(class_index, mask) for class_index, mask in instances if mask.any()]
    # illumination: a gradient and smooth shading; a colour cast; blur (optics) and sensor noise
    u, _ = _local_coordinates(size, (size / 2, size / 2), rng.uniform(0, 2 * np.pi))
    image = image * (1 + rng.uniform(0.0, 0.6) * u[..., None] / size)
    image = image * (1 - rng.uniform(0.0, 0.35) * _smooth_field(rng, size, 3))
    image = image * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    blur = rng.uniform(0.5, 1.3)
    image = ndimage.gaussian_filter(image, (blur, blur, 0))
    image = image + rng.normal(0, rng.uniform(0.015, 0.05), image.shape)
    rgb = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    ground_truth = label_map.copy()
    ground_truth[boundary_band(label_map)] = IGNORE_LABEL
    return rgb, ground_truth, instances


def make_cues(rng, instances, size, grid_size, params=CueParams()):
    """Official-format cues of one image: (labels int64 (L,), cues int64 3×K of (class, row, col)).

    The score and saliency fields are computed on a working grid twice as fine as the cue grid
    (2g−1 cells, aligned corners, so that every second working cell is a cue cell); distances and
    widths scale with it, which keeps the cues independent of the image size and fast to make.
    """
    work_size = 2 * grid_size - 1
    positions = aligned_corner_indices(size, work_size)
    cue_cells = (slice(None, None, 2), slice(None, None, 2))
    classes = sorted({class_index for class_index, _ in instances})
    class_scores = {}
    saliency = np.zeros((work_size, work_size), dtype=np.float32)
    for class_index in classes:
        members = [_work_mask(mask, positions) for index, mask in instances if index == class_index]
        keep = np.ones(len(members), dtype=bool)
        if len(members) > 1:
            keep = rng.random(len(members)) >= params.instance_miss_probability
            keep[rng.integers(0, len(members))] = True
        score = np.zeros((work_size, work_size), dtype=np.float32)
        for mask, kept in zip(members, keep):
            radius = np.sqrt(mask.sum() / np.pi)
            if kept:
                score = np.maximum(score, _cam_bump(rng, mask, radius, params))
            weak = rng.random() < params.weak_saliency_probability
            strength = rng.uniform(0.15, 0.45) if weak else rng.uniform(0.8, 1.0)
            # saliency detectors lose objects that fill much of the frame
            strength *= np.clip((params.large_object_share - mask.mean()) / params.large_object_share, 0.15, 1.0)
            uneven = 1 - rng.uniform(*params.saliency_unevenness) * _smooth_field(rng, work_size, 4)[..., 0]
            saliency = np.maximum(saliency, strength * uneven * _saliency_bump(mask, radius, rng))
        class_scores[class_index] = score[cue_cells]
    saliency = saliency + rng.uniform(*params.clutter_saliency) * _smooth_field(rng, work_size, 5)[..., 0]
    saliency = saliency * _border_prior(rng, work_size, params)
    grid_saliency = saliency[cue_cells]

    label_grid = np.full((grid_size, grid_size), -1, dtype=np.int64)
    threshold = np.quantile(grid_saliency, params.background_fraction)
    label_grid[grid_saliency <= threshold] = 0
    if classes:
        stacked = np.stack([class_scores[class_index] for class_index in classes])
        seeded = np.zeros_like(stacked, dtype=bool)
        for position, scores in enumerate(stacked):
            seeded[position] = scores >= rng.uniform(*params.cam_threshold) * scores.max()
        best = np.argmax(np.where(seeded, stacked, -1.0), axis=0)
        any_seed = seeded.any(axis=0)
        label_grid[any_seed] = np.asarray(classes)[best[any_seed]]
    rows, cols = np.nonzero(label_grid >= 0)
    cues = np.stack([label_grid[rows, cols], rows, cols]).astype(np.int64)
    return np.asarray(classes, dtype=np.int64), cues


def _work_mask(mask, positions):
    """An S×S object mask sampled on the working grid; a sliver that misses every sample keeps its centre cell."""
    sampled = mask[np.ix_(positions, positions)]
    if not sampled.any():
        rows, cols = np.nonzero(mask)
        sampled[np.abs(positions - rows.mean()).argmin(), np.abs(positions - cols.mean()).argmin()] = True
    return sampled


def _gaussian_bump(rng, shape, peak, width):
    """An anisotropic Gaussian of std `width` pixels (randomly stretched along rows or columns) at `peak`."""
    rows, cols = _pixel_grid(shape[0])
    stretch = rng.uniform(0.6, 1.4)
    return np.exp(-((rows - peak[0]) ** 2 * stretch + (cols - peak[1]) ** 2 / stretch) / (2 * width ** 2))


def _random_pixel(rng, selection):
    candidates = np.flatnonzero(selection)
    return np.unravel_index(candidates[rng.integers(0, candidates.size)], selection.shape)


def _cam_bump(rng, mask, radius, params):
    """CAM-like score of one object.

    A Gaussian bump at a core point (or, with `discriminative_part_probability`, an off-centre
    part) times the blurred object mask (bleeding over the boundary), plus sometimes a second
    bump on the surroundings next to the object (context that co-occurs with the class).
    """
    inside = ndimage.distance_transform_edt(mask)
    core_share = 0.3 if rng.random() < params.discriminative_part_probability else 0.85
    peak = _random_pixel(rng, inside >= core_share * inside.max())
    width = min(rng.uniform(*params.cam_width) * radius, params.cam_width_cap * mask.shape[0])
    bump = _gaussian_bump(rng, mask.shape, peak, width)
    bleed = ndimage.gaussian_filter(mask.astype(np.float32), rng.uniform(*params.cam_bleed) * radius)
    leak = rng.uniform(*params.cam_leak)
    score = bump * (leak + (1 - leak) * bleed / max(float(bleed.max()), 1e-6))
    if rng.random() < params.context_probability:
        outside = ndimage.distance_transform_edt(~mask)
        ring = (outside > 0.1 * radius) & (outside < 0.6 * radius)
        if ring.any():
            context = _gaussian_bump(rng, mask.shape, _random_pixel(rng, ring), rng.uniform(0.3, 0.6) * radius)
            score = np.maximum(score, rng.uniform(*params.context_strength) * float(score.max()) * context)
    return score


def _border_prior(rng, size, params):
    """Saliency methods take the image border for background: a factor rising from the border inwards."""
    rows, cols = _pixel_grid(size)
    to_border = np.minimum(np.minimum(rows, cols), np.minimum(size - 1 - rows, size - 1 - cols))
    floor = rng.uniform(*params.border_prior)
    return floor + (1 - floor) * np.clip(to_border / (params.border_width * size), 0, 1)


def _saliency_bump(mask, radius, rng):
    """Saliency of one object: 1 inside, decaying with the distance outside (scale ~ the object's size)."""
    outside = ndimage.distance_transform_edt(~mask)
    spread = rng.uniform(0.3, 0.8) * radius
    return np.exp(-(outside / spread) ** 2).astype(np.float32)


def sample_rng(seed, split, index):
    """The Generator of one image: a function of (seed, split, index) only."""
    return np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])


def image_name(split, index):
    return f"{split}_{index:05d}"


def generate_split(split, count, seed, size, grid_size, params=CueParams(), progress=None):
    """Yield (id, RGB image, ground truth, labels, cues) for `count` images; cues only for "train"."""
    indices = range(count) if progress is None else progress(range(count), desc=f"demo {split}", unit="img")
    for index in indices:
        rng = sample_rng(seed, split, index)
        rgb, ground_truth, instances = render_sample(rng, size)
        if split == "train":
            labels, cues = make_cues(rng, instances, size, grid_size, params)
        else:
            labels, cues = np.asarray(sorted({index for index, _ in instances}), dtype=np.int64), None
        yield image_name(split, index), rgb, ground_truth, labels, cues
