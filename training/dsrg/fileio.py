"""Atomic file output shared by every tool (arrays, images, and dsrg.atomic's bytes, text and JSON): a file
either exists complete or not at all. Image input with bounds."""
import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dsrg.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, current_umask  # noqa: F401
from dsrg.voc import PALETTE


def atomic_save_npy(path, array):
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    atomic_write_bytes(path, buffer.getvalue())


def atomic_save_image(path, image, image_format=None):
    """Save a PIL image (or an H×W×3 uint8 array) atomically; the format follows the suffix."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format or Image.registered_extensions()[Path(path).suffix.lower()])
    atomic_write_bytes(path, buffer.getvalue())


def atomic_save_label_png(path, label):
    """Save an H×W uint8 label map as a VOC palette PNG (255 = ignore)."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"{path}: a label map must be H×W, got shape {label.shape}")
    image = Image.fromarray(label.astype(np.uint8), mode="P")
    image.putpalette(PALETTE)
    atomic_save_image(path, image, "PNG")


# The largest image side the tools accept (VOC's images are at most 500 px, COCO's 640). An image is
# decoded whole and, at test time, run at up to 1.25 × its size through the net: a 10,000 × 10,000
# photo took 5.1 GB in infer before it failed. PIL's own limit (about 179 megapixels) is far above.
MAX_IMAGE_SIDE = 4096


def image_size_problem(size):
    """Why an image of `size` (width, height) is refused, or None."""
    width, height = size
    if max(width, height) > MAX_IMAGE_SIDE:
        return (f"image is {width}×{height} pixels, larger than the {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE} the tools "
                "accept (dsrg.fileio.MAX_IMAGE_SIDE); resize it first")
    return None


def open_image(path):
    """PIL's lazy Image.open (header only) of an image within MAX_IMAGE_SIDE; a file that is missing,
    undecodable or too large (PIL's decompression-bomb check included) is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: {error}") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read image ({error})") from error
    problem = image_size_problem(image.size)
    if problem:
        image.close()
        raise ValueError(f"{path}: {problem}")
    return image


def read_label_png(path):
    """Read a palette (or grey) label PNG as an H×W uint8 array of class indices."""
    with open_image(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette or greyscale label PNG, got mode {image.mode}")
        return np.array(image, dtype=np.uint8)


def read_rgb(path):
    """Read an image file as an H×W×3 uint8 RGB array; a missing or undecodable file is an error naming it."""
    with open_image(path) as image:
        try:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (OSError, SyntaxError) as error:
            raise ValueError(f"{path}: cannot read image ({error})") from error
