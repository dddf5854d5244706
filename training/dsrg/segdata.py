"""Segmentation training batches (stage 2): list file, random crop, mirror, background prefetching.

The list file holds one "image_path label_path" pair a line, relative to a root folder (DeepLab's
list format; a leading "/" is relative to the root too). Each sample:

- image: read as RGB, turned to BGR float32, the BGR mean subtracted, multiplied by `scale`
  (1 by default), transposed to 3×H×W;
- label: a palette or greyscale PNG of class indices (255 = ignore);
- both padded at the bottom and right up to the crop size, a square side or a (height, width)
  pair (image with the mean, i.e. 0 after the subtraction; label with the ignore label), cropped at
  the same offset (random, or centred when `random_crop` is off), and mirrored together with
  probability 1/2 when mirroring is on.

A background thread prepares batches ahead so the consumer (Caffe's forward) does not wait on disk;
an error in that thread is raised by the next :meth:`SegmentationBatchLoader.next_batch`.
"""
import numbers
import queue
import threading
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError

from dsrg.fileio import read_label_png, read_rgb
from dsrg.lists import read_image_label_pairs
from dsrg.voc import IGNORE_LABEL


def read_bgr_image(path):
    """An image file as an H×W×3 float32 BGR array; a missing or unreadable file is named."""
    return read_rgb(path).astype(np.float32)[:, :, ::-1]


def read_label_map(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label map not found: {path}")
    try:
        return read_label_png(path)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read label map ({error})") from error


def crop_shape(crop_size):
    """(height, width) of a crop given as one positive int (a square) or a (height, width) pair of them.

    Anything else (a bool, a float, a pair of the wrong length, a value below 1) is a ValueError
    naming the expected and the actual value.
    """
    sides = list(crop_size) if isinstance(crop_size, (tuple, list)) else [crop_size, crop_size]
    if len(sides) != 2 or not all(isinstance(side, numbers.Integral) and not isinstance(side, bool)
                                  and side >= 1 for side in sides):
        raise ValueError(f"crop_size must be a positive int or a (height, width) pair of positive ints, "
                         f"got {crop_size!r}")
    return int(sides[0]), int(sides[1])


def crop_sample(image, label, crop_size, ignore_label, rng, mirror, random_crop=True):
    """Pad (image with 0 = the mean after subtraction, label with `ignore_label`), crop, mirror.

    image: H×W×3 float32 (mean already subtracted); label: H×W; crop_size: an int or (height, width).
    The crop offset is uniform over the padded image (`random_crop`) or centred (rounded down).
    Returns (3×h×w float32, 1×h×w float32).
    """
    crop_height, crop_width = crop_shape(crop_size)
    height, width = label.shape
    padded_height, padded_width = max(height, crop_height), max(width, crop_width)
    padded_image = np.zeros((padded_height, padded_width, 3), dtype=np.float32)
    padded_image[:height, :width] = image
    padded_label = np.full((padded_height, padded_width), ignore_label, dtype=np.float32)
    padded_label[:height, :width] = label
    if random_crop:
        top = int(rng.integers(0, padded_height - crop_height + 1))
        left = int(rng.integers(0, padded_width - crop_width + 1))
    else:
        top, left = (padded_height - crop_height) // 2, (padded_width - crop_width) // 2
    image_crop = padded_image[top:top + crop_height, left:left + crop_width]
    label_crop = padded_label[top:top + crop_height, left:left + crop_width]
    if mirror and rng.integers(0, 2):
        image_crop = image_crop[:, ::-1]
        label_crop = label_crop[:, ::-1]
    return (np.ascontiguousarray(image_crop.transpose(2, 0, 1)),
            np.ascontiguousarray(label_crop[None]))


class SegmentationBatchLoader:
    """Batches (images N×3×h×w float32, labels N×1×h×w float32) from a DeepLab list file.

    crop_size: an int (square) or a (height, width) pair; scale: factor applied to the
    mean-subtracted image; random_crop: random crop offsets (training) or centred crops.
    """

    def __init__(self, root_folder, source, batch_size, crop_size, mean, mirror=True,
                 ignore_label=IGNORE_LABEL, shuffle=True, seed=None, prefetch=3, scale=1.0,
                 random_crop=True):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.crop_height, self.crop_width = crop_shape(crop_size)
        if len(mean) != 3:
            raise ValueError(f"mean must hold 3 values (B, G, R), got {len(mean)}: {mean!r}")
        self.entries = read_image_label_pairs(root_folder, source)
        self.batch_size = batch_size
        self.mean = np.asarray(mean, dtype=np.float32)
        self.scale = np.float32(scale)
        self.mirror = mirror
        self.random_crop = random_crop
        self.ignore_label = ignore_label
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._order = self._epoch_order()
        self._cursor = 0
        self._queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._produce, name="ImageSegDataPrefetch", daemon=True)
        self._thread.start()

    def _epoch_order(self):
        order = np.arange(len(self.entries))
        if self.shuffle:
            self._rng.shuffle(order)
        return order

    def _next_entry(self):
        if self._cursor == len(self._order):
            self._order = self._epoch_order()
            self._cursor = 0
        entry = self.entries[self._order[self._cursor]]
        self._cursor += 1
        return entry

    def load_sample(self, image_path, label_path):
        image = (read_bgr_image(image_path) - self.mean) * self.scale
        label = read_label_map(label_path)
        if image.shape[:2] != label.shape:
            raise ValueError(f"{label_path}: label map is {label.shape[0]}×{label.shape[1]} but image "
                             f"{image_path} is {image.shape[0]}×{image.shape[1]}")
        return crop_sample(image, label, (self.crop_height, self.crop_width), self.ignore_label, self._rng,
                           self.mirror, self.random_crop)

    def make_batch(self):
        images = np.empty((self.batch_size, 3, self.crop_height, self.crop_width), dtype=np.float32)
        labels = np.empty((self.batch_size, 1, self.crop_height, self.crop_width), dtype=np.float32)
        for position in range(self.batch_size):
            images[position], labels[position] = self.load_sample(*self._next_entry())
        return images, labels

    def _produce(self):
        while not self._stop.is_set():
            try:
                item = self.make_batch()
            except Exception as error:  # handed to the consumer, which raises it
                item = error
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, Exception):
                return

    def next_batch(self):
        if self._error is not None:
            raise self._error
        item = self._queue.get()
        if isinstance(item, Exception):
            self._error = item
            raise item
        return item

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
