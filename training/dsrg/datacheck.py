"""Checks of a VOC-layout data set before training: lists, images, ground truth and cues.

Everything the pipeline reads is opened once, so that a bad file stops the run in seconds rather
than hours into training:

- the list files (input list, training ids, val ids) are read by the project's readers
  (:func:`dsrg.lists.read_indexed_list`, :func:`dsrg.lists.read_image_ids`; LF or CRLF line
  endings both work). A UTF-8 byte-order mark is a problem: the Python readers skip it, but
  Caffe's ImageData and run.sh's awk read it as part of the first image name. An input list that
  lists an id twice, or gives two ids the same cue index, is a problem;
- every training id is in the input list, and its cue index has both keys ("%i_labels",
  "%i_cues") in the cue file, with labels in 0..C-1 and cues on the cue grid
  (:func:`dsrg.cues.image_cue_entry`, :func:`dsrg.cues.dense_cues`);
- every training and val image decodes completely (PIL ``load()``: a truncated JPEG is an error,
  not the grey-filled image OpenCV would make of it) and has a ground-truth PNG (palette or grey)
  of the same size whose values are class indices 0..C-1 or 255 (ignore). A training image is the
  file its input-list line names (what Caffe's ImageData opens), a val image ``<id>.jpg``. A data
  set whose training images have image-level labels only (``train_gt=False``) needs ground truth for
  its val images alone: the training images are decoded, not compared with a label map.

A problem is a dict ``{"file": path, "problem": text}``; :func:`check_dataset` returns every
problem found, in list order, with counts. :func:`fingerprint` is a cheap digest of the inputs
(list contents, the cue file's size and mtime, size and mtime of every listed image and label
map, the options) with which a caller can skip a check already passed on the same inputs.
"""
import hashlib
import json
import os
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dsrg.cues import dense_cues, image_cue_entry, load_cues
from dsrg.fileio import image_size_problem, read_label_png
from dsrg.lists import read_image_ids, read_indexed_list, read_list_lines
from dsrg.voc import IGNORE_LABEL

REPORT_FORMAT = "dsrg-data-check-v1"
UTF8_BOM = b"\xef\xbb\xbf"


class DataLayout:
    """The paths and options of one check; `image_ext` names val images (``<id><image_ext>``); `train_gt`
    False: the training images have no ground truth to check."""

    def __init__(self, images, gt, input_list, train_ids, val_ids, cues, num_classes, cue_size=41,
                 image_ext=".jpg", gt_ext=".png", train_gt=True):
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be at least 2 (background and one class), got {num_classes}")
        if int(cue_size) < 1:
            raise ValueError(f"cue_size must be positive, got {cue_size}")
        self.images, self.gt = Path(images), Path(gt)
        self.input_list, self.train_ids, self.val_ids = Path(input_list), Path(train_ids), Path(val_ids)
        self.cues = Path(cues)
        self.num_classes, self.cue_size = int(num_classes), int(cue_size)
        self.image_ext, self.gt_ext = image_ext, gt_ext
        self.train_gt = bool(train_gt)

    def lists(self):
        """(role, path) of the three list files."""
        return (("input list", self.input_list), ("training ids", self.train_ids), ("val ids", self.val_ids))

    def describe(self):
        """The layout as a JSON-ready dict of absolute paths and options."""
        paths = {name: str(Path(getattr(self, name)).resolve())
                 for name in ("images", "gt", "input_list", "train_ids", "val_ids", "cues")}
        return dict(paths, num_classes=self.num_classes, cue_size=self.cue_size, image_ext=self.image_ext,
                    gt_ext=self.gt_ext, train_gt=self.train_gt)


def problem(path, text):
    """One problem of the report: the file it concerns and what is wrong with it."""
    return {"file": str(path), "problem": text}


def check_image(path):
    """(width, height) of an image that decodes completely, else (None, problem text)."""
    if not path.is_file():
        return None, "image missing" if not path.exists() else "not a regular file"
    if path.stat().st_size == 0:
        return None, "empty image file (0 bytes)"
    try:
        with Image.open(path) as image:
            too_large = image_size_problem(image.size)
            if too_large:
                return None, too_large
            image.load()
            return image.size, None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return None, f"expected an image that decodes completely, got {type(error).__name__}: {error}"


def check_label_map(path, size, num_classes):
    """Problem text for a ground-truth PNG (None when fine): missing, unreadable, of another size
    than its image (`size` = (width, height), or None when the image failed), or with values outside
    0..num_classes-1 and 255."""
    if not path.is_file():
        return "ground-truth label map missing"
    try:
        labels = read_label_png(path)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        return f"expected a palette or greyscale label PNG, got {type(error).__name__}: {error}"
    if size is not None and labels.shape != (size[1], size[0]):
        return (f"label map is {labels.shape[1]}×{labels.shape[0]} (W×H) but its image is "
                f"{size[0]}×{size[1]}")
    counts = np.bincount(labels.ravel(), minlength=256)
    counts[:num_classes] = 0
    counts[IGNORE_LABEL] = 0
    bad = np.flatnonzero(counts)
    if bad.size:
        return (f"label values {bad[:10].tolist()} ({int(counts[bad].sum())} pixels) outside the classes "
                f"0..{num_classes - 1} and {IGNORE_LABEL} (ignore)")
    return None


def check_image_pair(image_path, gt_path, num_classes):
    """Problems of one image and its ground truth (None: the image alone), in that order."""
    size, image_problem = check_image(image_path)
    found = [problem(image_path, image_problem)] if image_problem else []
    gt_problem = check_label_map(gt_path, size, num_classes) if gt_path is not None else None
    if gt_problem:
        found.append(problem(gt_path, gt_problem))
    return found


def list_file_problems(role, path):
    """Problems of a list file as bytes (missing, byte-order mark) and whether it uses CRLF."""
    if not path.is_file():
        return [problem(path, f"{role} file missing")], False
    data = path.read_bytes()
    found = []
    if data.startswith(UTF8_BOM):
        found.append(problem(path, f"{role} starts with a UTF-8 byte-order mark: the Python list readers skip it, "
                                   "but Caffe's ImageData and run.sh's awk read it as part of the first image "
                                   "name; save the file without it"))
    return found, b"\r\n" in data


def read_lists(layout):
    """Parse the three lists. Returns (pairs or None, train ids or None, val ids or None, problems,
    names of the lists with CRLF line endings)."""
    found, crlf = [], []
    parsed = {}
    readers = {"input list": read_indexed_list, "training ids": read_image_ids, "val ids": read_image_ids}
    for role, path in layout.lists():
        file_problems, has_crlf = list_file_problems(role, path)
        found += file_problems
        if has_crlf:
            crlf.append(path.name)
        parsed[role] = None
        if path.is_file():
            try:
                parsed[role] = readers[role](path)
            except (ValueError, OSError) as error:
                found.append(problem(path, f"cannot read the {role}: {error}"))
    return parsed["input list"], parsed["training ids"], parsed["val ids"], found, crlf


def input_list_problems(layout, pairs):
    """Ids listed twice and cue indices given to two ids; returns ({id: (file name, cue index)}, problems),
    the file name as the line gives it (what Caffe's ImageData opens under the image folder)."""
    entries, by_index, found = {}, {}, []
    file_names = [line.split()[0] for line in read_list_lines(layout.input_list) if line.split()]
    for file_name, (name, index) in zip(file_names, pairs):
        if name in entries:
            found.append(problem(layout.input_list, f"image {name} is listed twice (cue indices "
                                                    f"{entries[name][1]} and {index})"))
            continue
        if index in by_index:
            found.append(problem(layout.input_list, f"cue index {index} is given to both {by_index[index]} and {name}"))
        by_index.setdefault(index, name)
        entries[name] = (file_name, index)
    return entries, found


def split_overlap_problems(layout, train_ids, val_ids, shown=5):
    """One problem when ids are both training and val ids (a val score would be measured on training
    images), naming the count and the first `shown` of them."""
    val = set(val_ids)
    both = [name for name in dict.fromkeys(train_ids) if name in val]
    if not both:
        return []
    names = ", ".join(both[:shown]) + (f" and {len(both) - shown} more" if len(both) > shown else "")
    return [problem(layout.val_ids, f"{len(both)} val id(s) are also training ids (from {layout.train_ids.name}): "
                                    f"{names}")]


def cue_problems(layout, entries, train_ids):
    """Training ids missing from the input list, and cue entries that are missing or malformed.

    Returns (problems, number of images in the cue file or None, notes from the cue reader)."""
    found, notes = [], []
    for name in train_ids:
        if name not in entries:
            found.append(problem(layout.input_list, f"training id {name} (from {layout.train_ids.name}) is not listed"))
    if not layout.cues.is_file():
        return found + [problem(layout.cues, "cue file missing")], None, notes
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mapping = load_cues(layout.cues)
    except (ValueError, OSError, KeyError, EOFError, pickle.UnpicklingError) as error:
        return found + [problem(layout.cues, f"cannot read the cue file: {error}")], None, notes
    notes += [str(warning.message) for warning in caught]
    for name in train_ids:
        if name not in entries:
            continue
        index = entries[name][1]
        try:
            _, cue_rows = image_cue_entry(mapping, index, layout.num_classes, str(layout.cues))
            dense_cues(cue_rows, layout.num_classes, layout.cue_size, layout.cue_size)
        except ValueError as error:
            text = str(error)
            found.append(problem(layout.cues, f"training image {name} (cue index {index}, {layout.cue_size}×"
                                              f"{layout.cue_size} grid): {text}"))
    return found, sum(key.endswith("_labels") for key in mapping), notes


def image_jobs(layout, entries, train_ids, val_ids):
    """[(image path, ground-truth path or None)] of the training and val images, each pair once, in list
    order; a training image's ground truth is None when the layout has none for them."""
    pairs = []
    for name in train_ids:
        file_name = entries[name][0] if name in entries else f"{name}{layout.image_ext}"
        gt_path = layout.gt / f"{name}{layout.gt_ext}" if layout.train_gt else None
        pairs.append((layout.images / file_name, gt_path))
    for name in val_ids:
        pairs.append((layout.images / f"{name}{layout.image_ext}", layout.gt / f"{name}{layout.gt_ext}"))
    return list(dict.fromkeys(pairs))


def fingerprint(layout):
    """A hex digest of everything the check reads, from list contents and file sizes and mtimes.

    Cheap (no image is opened). Lists that cannot be parsed still give a digest (of their bytes)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([REPORT_FORMAT, layout.describe()], sort_keys=True).encode())

    def add_stat(path):
        try:
            info = os.stat(path)
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())

    for _, path in layout.lists():
        digest.update(path.read_bytes() if path.is_file() else b"missing")
        digest.update(b"\0")
    add_stat(layout.cues)
    try:
        pairs = read_indexed_list(layout.input_list)
        entries, _ = input_list_problems(layout, pairs)
        jobs = image_jobs(layout, entries, read_image_ids(layout.train_ids), read_image_ids(layout.val_ids))
    except (ValueError, OSError):
        jobs = []
    for image_path, gt_path in jobs:
        add_stat(image_path)
        if gt_path is not None:
            add_stat(gt_path)
    return digest.hexdigest()


def check_dataset(layout, progress=None, jobs=None):
    """Check `layout` (a :class:`DataLayout`); returns the report dict.

    progress: a tqdm-like wrapper, called as ``progress(iterable, total=n)``, around the checked image
    pairs (dsrg.progress.progress, say).
    jobs: decoding threads (default: the number of CPUs; PIL releases the GIL while decoding).
    Report keys: ``ok``, ``problems`` (all, in list order), ``counts``, ``notes``, ``layout``.
    """
    found = []
    for role, folder in (("image folder", layout.images), ("ground-truth folder", layout.gt)):
        if not folder.is_dir():
            found.append(problem(folder, f"{role} missing"))
    pairs, train_ids, val_ids, list_problems, crlf = read_lists(layout)
    found += list_problems
    entries = {}
    if pairs is not None:
        entries, duplicates = input_list_problems(layout, pairs)
        found += duplicates
    if train_ids is not None and val_ids is not None:
        found += split_overlap_problems(layout, train_ids, val_ids)
    cue_images, notes = None, []
    if train_ids is not None and pairs is not None:
        more, cue_images, notes = cue_problems(layout, entries, train_ids)
        found += more
    checked = []
    if layout.images.is_dir() and layout.gt.is_dir():
        checked = image_jobs(layout, entries, train_ids or [], val_ids or [])
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            results = pool.map(lambda pair: check_image_pair(*pair, layout.num_classes), checked)
            for pair_problems in results if progress is None else progress(results, total=len(checked)):
                found += pair_problems
    if crlf:
        notes.append(f"CRLF line endings in {', '.join(crlf)} (read correctly)")
    counts = {
        "input_list_entries": len(pairs) if pairs is not None else None,
        "train_ids": len(train_ids) if train_ids is not None else None,
        "val_ids": len(val_ids) if val_ids is not None else None,
        "images_checked": len(checked),
        "cue_file_images": cue_images,
        "problems": len(found),
    }
    return {"format": REPORT_FORMAT, "ok": not found, "problems": found, "counts": counts, "notes": notes,
            "layout": layout.describe()}
