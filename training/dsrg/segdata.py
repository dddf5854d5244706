"""Segmentation training batches (stage 2): list file, random crop, mirror, background prefetching.

The list file holds one "image_path label_path" pair a line, relative to a root folder (DeepLab's
list format; a leading "/" is relative to the root too). Each sample:

- image: read as RGB, turned to BGR float32, the BGR mean subtracted, transposed to 3×H×W;
- label: a palette or greyscale PNG of class indices (255 = ignore);
- both padded at the bottom and right up to the crop size (image with the mean, i.e. 0 after the
  subtraction; label with the ignore label), cropped at the same random offset, and mirrored
  together with probability 1/2 when mirroring is on.

A background thread prepares batches ahead so the consumer (Caffe's forward) does not wait on disk;
an error in that thread is raised by the next :meth:`SegmentationBatchLoader.next_batch`.
"""
import queue
import threading
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dsrg.fileio import read_label_png
from dsrg.voc import IGNORE_LABEL


def read_list_file(root_folder, source):
    """[(image path, label path)] of a DeepLab list file; a malformed line names the file and line."""
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"segmentation list file not found: {source}")
    root = Path(root_folder)
    entries = []
    for number, line in enumerate(source.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError(f"{source}:{number}: expected 'image_path label_path', got {line!r}")
        entries.append((root / fields[0].lstrip("/"), root / fields[1].lstrip("/")))
    if not entries:
        raise ValueError(f"{source}: the list file has no entries")
    return entries


def read_bgr_image(path):
    """An image file as an H×W×3 float32 BGR array; a missing or unreadable file is named."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read image ({error})") from error
    return rgb[:, :, ::-1]


def read_label_map(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label map not found: {path}")
    try:
        return read_label_png(path)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read label map ({error})") from error


def crop_sample(image, label, crop_size, ignore_label, rng, mirror):
    """Pad (image with 0 = the mean after subtraction, label with `ignore_label`), random-crop, mirror.

    image: H×W×3 float32 (mean already subtracted); label: H×W. Returns (3×s×s float32, 1×s×s float32).
    """
    height, width = label.shape
    padded_height, padded_width = max(height, crop_size), max(width, crop_size)
    padded_image = np.zeros((padded_height, padded_width, 3), dtype=np.float32)
    padded_image[:height, :width] = image
    padded_label = np.full((padded_height, padded_width), ignore_label, dtype=np.float32)
    padded_label[:height, :width] = label
    top = int(rng.integers(0, padded_height - crop_size + 1))
    left = int(rng.integers(0, padded_width - crop_size + 1))
    image_crop = padded_image[top:top + crop_size, left:left + crop_size]
    label_crop = padded_label[top:top + crop_size, left:left + crop_size]
    if mirror and rng.integers(0, 2):
        image_crop = image_crop[:, ::-1]
        label_crop = label_crop[:, ::-1]
    return (np.ascontiguousarray(image_crop.transpose(2, 0, 1)),
            np.ascontiguousarray(label_crop[None]))


class SegmentationBatchLoader:
    """Batches (images N×3×s×s float32, labels N×1×s×s float32) from a DeepLab list file."""

    def __init__(self, root_folder, source, batch_size, crop_size, mean, mirror=True,
                 ignore_label=IGNORE_LABEL, shuffle=True, seed=None, prefetch=3):
        if batch_size < 1 or crop_size < 1:
            raise ValueError(f"batch_size and crop_size must be positive, got {batch_size} and {crop_size}")
        if len(mean) != 3:
            raise ValueError(f"mean must hold 3 values (B, G, R), got {len(mean)}: {mean!r}")
        self.entries = read_list_file(root_folder, source)
        self.batch_size = batch_size
        self.crop_size = crop_size
        self.mean = np.asarray(mean, dtype=np.float32)
        self.mirror = mirror
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
        image = read_bgr_image(image_path) - self.mean
        label = read_label_map(label_path)
        if image.shape[:2] != label.shape:
            raise ValueError(f"{label_path}: label map is {label.shape[0]}×{label.shape[1]} but image "
                             f"{image_path} is {image.shape[0]}×{image.shape[1]}")
        return crop_sample(image, label, self.crop_size, self.ignore_label, self._rng, self.mirror)

    def make_batch(self):
        images = np.empty((self.batch_size, 3, self.crop_size, self.crop_size), dtype=np.float32)
        labels = np.empty((self.batch_size, 1, self.crop_size, self.crop_size), dtype=np.float32)
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
