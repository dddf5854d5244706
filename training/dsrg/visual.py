"""Panels for looking at results: image | ground truth | prediction | cues | grown seeds.

Label maps are coloured with the VOC palette (255 = ignore/no seed shows as the palette's cream).
Seeds live on an h×w grid aligned with the image by the aligned-corners rule of dsrg/seeds.py: cue
cell (r, c) is image pixel (r·(H−1)/(h−1), c·(W−1)/(w−1)). Cues are drawn as coloured dots there on
a dimmed image; grown seeds as the grid's cells (each pixel takes its nearest cell) blended over it.
Background seeds are drawn in BACKGROUND_SEED_RGB (light grey: the palette's black would vanish on
the dimmed image), which the legend shows as its own "background seed" entry.
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dsrg.resize import aligned_corner_indices
from dsrg.voc import IGNORE_LABEL, PALETTE

PALETTE_RGB = np.asarray(PALETTE, dtype=np.uint8).reshape(256, 3)
BACKGROUND_GREY = 96
BACKGROUND_SEED_RGB = (235, 235, 235)
BACKGROUND_SEED_NAME = "background seed"
TEXT_HEIGHT = 14


def colorize(label_map):
    """An h×w label map as an h×w×3 uint8 RGB image in the VOC palette."""
    return PALETTE_RGB[np.asarray(label_map, dtype=np.uint8)]


def seeds_to_label_map(seeds):
    """Boolean C×h×w seeds as an h×w label map (255 = no seed; a cell with several classes shows the first)."""
    seeds = np.asarray(seeds, dtype=bool)
    label_map = np.argmax(seeds, axis=0).astype(np.uint8)
    label_map[~seeds.any(axis=0)] = IGNORE_LABEL
    return label_map


def draw_cues(image, seed_labels, dim=0.45):
    """Seed cells as palette-coloured dots on the dimmed image; `seed_labels` h×w with 255 = no seed."""
    image = np.asarray(image)
    height, width = image.shape[:2]
    canvas = Image.fromarray((image.astype(np.float32) * dim).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    rows = aligned_corner_indices(height, seed_labels.shape[0])
    cols = aligned_corner_indices(width, seed_labels.shape[1])
    step = min(height / max(seed_labels.shape[0] - 1, 1), width / max(seed_labels.shape[1] - 1, 1))
    radius = max(1.0, 0.35 * step)
    for row, col in zip(*np.nonzero(seed_labels != IGNORE_LABEL)):
        colour = tuple(int(value) for value in PALETTE_RGB[seed_labels[row, col]])
        if seed_labels[row, col] == 0:
            colour = BACKGROUND_SEED_RGB
        y, x = rows[row], cols[col]
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return np.asarray(canvas)


def draw_grown_seeds(image, seed_labels, opacity=0.65):
    """Grid seed labels blended over the image at full size; unseeded cells stay dimmed image."""
    image = np.asarray(image).astype(np.float32)
    height, width = image.shape[:2]
    cells = seed_labels[np.ix_(aligned_corner_indices(seed_labels.shape[0], height),
                               aligned_corner_indices(seed_labels.shape[1], width))]
    colours = colorize(cells).astype(np.float32)
    colours[cells == 0] = BACKGROUND_SEED_RGB
    seeded = (cells != IGNORE_LABEL)[..., None]
    blended = np.where(seeded, (1 - opacity) * image + opacity * colours, 0.45 * image)
    return np.clip(blended, 0, 255).astype(np.uint8)


def _font():
    return ImageFont.load_default()


def titled(panel, title, size, smooth=False):
    """`panel` resized to size×size with a title strip above (nearest keeps label edges; `smooth`: bilinear)."""
    resample = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    image = Image.fromarray(np.asarray(panel)).resize((size, size), resample)
    canvas = Image.new("RGB", (size, size + TEXT_HEIGHT), (255, 255, 255))
    canvas.paste(image, (0, TEXT_HEIGHT))
    ImageDraw.Draw(canvas).text((3, 1), title, fill=(0, 0, 0), font=_font())
    return canvas


def legend(class_names, width, classes=None, background_seeds=False, fit=False):
    """Rows of colour swatches with class names, `width` pixels wide; `classes` picks which (default all).

    The swatches are the label maps' palette colours; `background_seeds` adds the colour that cue and
    grown-seed panels draw background seeds in, as an entry of its own (BACKGROUND_SEED_NAME).
    `fit`: no wider than the entries need (at most `width`).
    """
    classes = range(len(class_names)) if classes is None else classes
    entries = [(tuple(int(v) for v in PALETTE_RGB[index]), class_names[index]) for index in classes]
    if background_seeds:
        entries.append((BACKGROUND_SEED_RGB, BACKGROUND_SEED_NAME))
    font = _font()
    cell_width = max(60, max((int(font.getlength(name)) for _, name in entries), default=0) + 22)
    per_row = max(1, width // cell_width)
    rows = max(1, -(-len(entries) // per_row))
    if fit:
        width = min(width, min(per_row, max(1, len(entries))) * cell_width + 3)
    canvas = Image.new("RGB", (width, rows * (TEXT_HEIGHT + 2) + 2), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for position, (colour, name) in enumerate(entries):
        x = (position % per_row) * cell_width + 3
        y = (position // per_row) * (TEXT_HEIGHT + 2) + 2
        draw.rectangle((x, y + 1, x + 12, y + 12), fill=colour, outline=(0, 0, 0))
        draw.text((x + 16, y), name, fill=(0, 0, 0), font=font)
    return canvas


def overlay(image, label_map, opacity=0.5, plain=(0, IGNORE_LABEL)):
    """The label map's palette colours blended over the H×W×3 uint8 image (`opacity` of the colour);
    pixels of the classes in `plain` (background, ignore) show the image unchanged."""
    image = np.asarray(image)
    label_map = np.asarray(label_map)
    if label_map.shape != image.shape[:2]:
        raise ValueError(f"overlay: label map {label_map.shape} and image {image.shape[:2]} differ in size")
    shown = np.ones(256, dtype=bool)
    shown[list(plain)] = False
    coloured = shown[label_map.astype(np.uint8)]
    blended = image.copy()
    colours = PALETTE_RGB[label_map[coloured]].astype(np.float32)
    blended[coloured] = np.clip(np.rint((1 - opacity) * image[coloured].astype(np.float32) + opacity * colours), 0, 255)
    return blended


def paste_legend(image, legend_image, margin=3, max_share=0.5, zoom=1):
    """A PIL copy of `image` with `legend_image` (see :func:`legend`), enlarged `zoom` times, in its
    lower-left corner, when it fits within the image's width and `max_share` of its height; otherwise
    the image unchanged."""
    canvas = Image.fromarray(np.asarray(image)).convert("RGB")
    if zoom > 1:
        legend_image = legend_image.resize((legend_image.width * zoom, legend_image.height * zoom),
                                           Image.Resampling.NEAREST)
        margin *= zoom
    if (legend_image.width + 2 * margin > canvas.width
            or legend_image.height + 2 * margin > max_share * canvas.height):
        return canvas
    canvas.paste(legend_image, (margin, canvas.height - legend_image.height - margin))
    return canvas


def make_row(panels, size):
    """[(title, H×W×3 array, smooth)] side by side, each size×size with its title; returns a PIL image."""
    tiles = [titled(panel, title, size, smooth) for title, panel, smooth in panels]
    row = Image.new("RGB", (size * len(tiles) + 2 * (len(tiles) - 1), size + TEXT_HEIGHT), (255, 255, 255))
    for position, tile in enumerate(tiles):
        row.paste(tile, (position * (size + 2), 0))
    return row


def stack(rows, legend_image=None):
    """Rows (PIL images) one under the other, then the legend; returns a PIL image."""
    parts = list(rows) + ([legend_image] if legend_image is not None else [])
    width = max(part.width for part in parts)
    canvas = Image.new("RGB", (width, sum(part.height + 2 for part in parts)), (255, 255, 255))
    top = 0
    for part in parts:
        canvas.paste(part, (0, top))
        top += part.height + 2
    return canvas
