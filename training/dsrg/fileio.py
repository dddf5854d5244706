"""Atomic file output shared by every tool: a file either exists complete or not at all."""
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dsrg.voc import PALETTE


def current_umask():
    """The process's file-creation mask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data):
    """Write `data` to `path` through a temporary file in the same folder and an atomic rename.

    The file gets the mode an ordinary `open(path, "w")` would give (0666 less the umask; mkstemp's
    own 0600 would hide every output from colleagues on a shared server). A failed write (a full
    disk, a read-only folder) leaves no partial file and is an OSError naming `path` and the cause.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OSError(error.errno, f"cannot write {path}: {error.strerror}") from error
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError):
            raise OSError(error.errno, f"cannot write {path}: {error.strerror}") from error
        raise


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


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
