"""Localization-cue files: safe loading, saving, and dense cue maps.

The official format (SEC's and DSRG's ``localization_cues*.pickle``) is a dict with, for the image of
index ``i`` (its line number in ``input_list.txt``):

- ``"%i_labels" % i``: int array of the foreground classes present in the image (1..C-1);
  background (class 0) is implicit;
- ``"%i_cues" % i``: int array of shape 3×K whose columns are (class, row, col) seeds on the
  h×w score grid (41×41 for 321×321 input); class 0 is a background seed.

Malformed data is an error naming the file and the image: when the file is read, a key of another
form, an image with only one of its two keys, a non-integer array, cues not of shape 3×K; when an
image is used, a label or cue class outside 0..C-1 or a cue outside the grid. Three things the release's AnnotationLayer trains on are accepted
and treated as it treats them, with one :class:`CueFileWarning` per file that counts them
(:func:`release_quirks`): label 0 listed (the background is marked present anyway), a label listed
twice (marked once), and cues of a class that is not in the image's labels (they stay in the dense
cue map, so they are seeds for the seed loss, but the class is not marked present and never grows).

Pickles (``.pickle``, ``.pkl``, optionally gzip'd with a ``.gz`` suffix) are read through a
restricted unpickler that admits only numpy array reconstruction and builtin containers and scalars;
any other global is refused before anything is called, so a hostile pickle executes nothing.

The ``.npz`` form (our own, loaded with ``allow_pickle=False``) stores the same mapping flattened:

- ``format``: the string ``"dsrg-cues-v1"``;
- ``image_ids``: int64 (M,), the image indices ``i`` in increasing order;
- ``label_offsets``: int64 (M+1,), image ``image_ids[m]`` has labels
  ``labels[label_offsets[m]:label_offsets[m+1]]``;
- ``labels``: int64, every image's labels concatenated;
- ``cue_offsets``: int64 (M+1,), image ``image_ids[m]`` has cues
  ``cues[:, cue_offsets[m]:cue_offsets[m+1]]``;
- ``cues``: int64 (3, total K), every image's (class, row, col) columns concatenated.
"""
import gzip
import io
import pickle
import re
import warnings
from pathlib import Path

import numpy as np

from dsrg.fileio import atomic_write_bytes
from dsrg.resize import aligned_corner_indices

NPZ_FORMAT = "dsrg-cues-v1"
# Bounds checked before anything is allocated, so that a small hostile or broken file cannot exhaust
# memory. Real files are far inside them: SEC's VOC file (10,582 images) decompresses to 104 MB and
# has at most a few thousand cues per image (41×41 cells, background and foreground classes).
MAX_CUE_FILE_BYTES = 2 * 2 ** 30
MAX_LABELS_PER_IMAGE = 256
MAX_CUES_PER_IMAGE = 1_000_000
MAX_ARRAY_VALUES = 3 * MAX_CUES_PER_IMAGE
PICKLE_SUFFIXES = (".pickle", ".pkl")
_KEY_PATTERN = re.compile(r"^(\d+)_(labels|cues)$")


class UnsafePickleError(pickle.UnpicklingError):
    """A cue pickle asked for a global outside the allowed set (numpy arrays and builtins)."""


class CueFileWarning(UserWarning):
    """A cue file holds data the release accepts but the format does not intend (see the module doc)."""


def _latin1_encode(text, encoding="latin1"):
    """Stand-in for ``_codecs.encode``, which Python 3 protocol-2 pickles use to store bytes."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _safe_dtype(spec, *args):
    """``numpy.dtype`` restricted to non-object dtypes (object arrays could hold arbitrary objects)."""
    dtype = np.dtype(spec, *args)
    if dtype.hasobject:
        raise UnsafePickleError(f"object dtype {dtype} is not allowed in a cue file")
    return dtype


def _bounded_shape(shape):
    """`shape` as a tuple of ints, refused (before anything is allocated) when it holds more than
    MAX_ARRAY_VALUES values: a few bytes of pickle can claim an array of gigabytes."""
    try:
        dims = tuple(int(dim) for dim in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    except (TypeError, ValueError):
        raise UnsafePickleError(f"array shape {shape!r} is not a tuple of integers") from None
    values = 1
    for dim in dims:
        if dim < 0:
            raise UnsafePickleError(f"array shape {dims} has a negative dimension")
        values *= dim
    if values > MAX_ARRAY_VALUES:
        raise UnsafePickleError(f"array shape {dims} ({values:,} values) exceeds the {MAX_ARRAY_VALUES:,} values "
                                "a cue array may hold")
    return dims


def _numpy_reconstruct(subtype, shape, dtype):
    # numpy pickles name the array type through the global numpy.ndarray, which find_class maps to
    # _numpy_ndarray (defined below; looked up at call time).
    if subtype is not np.ndarray and subtype is not _numpy_ndarray:
        raise UnsafePickleError(f"array subclass {subtype!r} is not allowed in a cue file")
    return np.ndarray.__new__(np.ndarray, _bounded_shape(shape), dtype)


def _numpy_ndarray(shape, dtype=float, *args):
    """``numpy.ndarray(shape, dtype)`` as a pickle may call it, with the shape bounded; no buffer."""
    if args:
        raise UnsafePickleError("numpy.ndarray over a buffer is not allowed in a cue file")
    return np.ndarray(_bounded_shape(shape), _safe_dtype(dtype))


def _numpy_scalar(dtype, data=None):
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UnsafePickleError("only plain (non-object) numpy scalars are allowed in a cue file")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "ndarray"): _numpy_ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "bool"): bool,
    ("builtins", "str"): str,
    ("builtins", "bytes"): bytes,
    ("builtins", "complex"): complex,
    ("__builtin__", "dict"): dict,
    ("__builtin__", "list"): list,
    ("__builtin__", "tuple"): tuple,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("__builtin__", "int"): int,
    ("__builtin__", "long"): int,
    ("__builtin__", "float"): float,
    ("__builtin__", "bool"): bool,
    ("__builtin__", "str"): str,
    ("__builtin__", "unicode"): str,
    ("__builtin__", "bytes"): bytes,
    ("__builtin__", "complex"): complex,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` only hands out the callables of ``_ALLOWED_GLOBALS``."""

    def __init__(self, handle, source):
        super().__init__(handle, encoding="latin1")
        self._source = source

    def find_class(self, module, name):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafePickleError(
                f"{self._source}: refused to load global '{module}.{name}' from a cue pickle; "
                "only numpy arrays and builtin containers/scalars are allowed"
            )
        return allowed

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._source}: persistent ids are not allowed in a cue pickle")


def read_gzip_bounded(path):
    """The decompressed bytes of a .gz cue file, refused beyond MAX_CUE_FILE_BYTES (a small .gz can
    expand a thousandfold)."""
    chunks, total = [], 0
    with gzip.open(path, "rb") as handle:
        while True:
            chunk = handle.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_CUE_FILE_BYTES:
                raise ValueError(f"{path}: decompresses to more than {MAX_CUE_FILE_BYTES:,} bytes, more than any "
                                 "cue file holds (SEC's file of 10,582 images: 104 MB)")
            chunks.append(chunk)
    return b"".join(chunks)


def restricted_unpickle_bytes(data, source="<bytes>"):
    """Unpickle `data` allowing only numpy arrays and builtin containers/scalars."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError as error:
        if str(error).startswith(f"{source}: "):
            raise
        raise UnsafePickleError(f"{source}: {error}") from None
    except Exception as error:
        raise ValueError(f"{source}: not a readable cue pickle ({type(error).__name__}: {error})") from error


def _is_gzip(path):
    return Path(path).suffix.lower() == ".gz"


def _base_suffix(path):
    path = Path(path)
    return Path(path.stem).suffix.lower() if _is_gzip(path) else path.suffix.lower()


def _validate_mapping(mapping, source):
    """Check keys are '<int>_labels' / '<int>_cues' in pairs, with int arrays of the right shape;
    return int64 copies."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{source}: a cue file must hold a dict, got {type(mapping).__name__}")
    checked = {}
    for key, value in mapping.items():
        match = _KEY_PATTERN.match(key) if isinstance(key, str) else None
        if match is None:
            raise ValueError(f"{source}: unexpected key {key!r}; expected '<index>_labels' or '<index>_cues'")
        array = np.asarray(value)
        if array.dtype.kind not in "iu" and not (array.size == 0 and array.dtype.kind == "f"):
            raise ValueError(f"{source}: {key!r} must be an integer array, got dtype {array.dtype}")
        array = array.astype(np.int64)
        if match.group(2) == "labels":
            array = array.reshape(-1)
            if array.size > MAX_LABELS_PER_IMAGE:
                raise ValueError(f"{source}: image {match.group(1)} lists {array.size} labels ({key!r}); an image "
                                 f"lists at most {MAX_LABELS_PER_IMAGE}")
        elif array.ndim != 2 or array.shape[0] != 3:
            if array.size == 0:
                array = array.reshape(3, 0)
            else:
                raise ValueError(f"{source}: {key!r} must have shape 3×K (class, row, col), got {array.shape}")
        elif array.shape[1] > MAX_CUES_PER_IMAGE:
            raise ValueError(f"{source}: image {match.group(1)} has {array.shape[1]:,} cues ({key!r}); an image has "
                             f"at most {MAX_CUES_PER_IMAGE:,}")
        checked[key] = array
    for key in checked:
        index, kind = _KEY_PATTERN.match(key).groups()
        partner = f"{index}_{'cues' if kind == 'labels' else 'labels'}"
        if partner not in checked:
            raise ValueError(f"{source}: image {index} has {key!r} but no {partner!r}; every image needs both")
    return checked


def release_quirks(mapping):
    """Counts of what the release trains on although the format does not intend it.

    mapping: a validated cue dict. Returns {"label_zero": images that list label 0,
    "repeated_labels": images that list a label more than once, "unlisted_cue_images": images with
    cues of a foreground class not in their labels, "unlisted_cues": those cues}.
    """
    counts = dict.fromkeys(("label_zero", "repeated_labels", "unlisted_cue_images", "unlisted_cues"), 0)
    for key, labels in mapping.items():
        index, kind = _KEY_PATTERN.match(key).groups()
        if kind != "labels":
            continue
        listed = labels.tolist()
        counts["label_zero"] += 0 in listed
        counts["repeated_labels"] += len(set(listed)) != len(listed)
        cue_classes = mapping[f"{index}_cues"][0]
        unlisted = int(np.count_nonzero((cue_classes != 0) & ~np.isin(cue_classes, labels)))
        counts["unlisted_cue_images"] += unlisted > 0
        counts["unlisted_cues"] += unlisted
    return counts


def _warn_release_quirks(mapping, source):
    """One CueFileWarning for `source` that counts its :func:`release_quirks`, if it has any."""
    counts = release_quirks(mapping)
    num_images = sum(1 for key in mapping if key.endswith("_labels"))
    parts = []
    if counts["label_zero"]:
        parts.append(f"{counts['label_zero']} images list label 0 (background, implicit): ignored, "
                     "the background is present anyway")
    if counts["repeated_labels"]:
        parts.append(f"{counts['repeated_labels']} images list a label more than once: counted once")
    if counts["unlisted_cue_images"]:
        parts.append(f"{counts['unlisted_cue_images']} images have {counts['unlisted_cues']} cues of classes "
                     "not in their labels: kept as seeds (seed loss) but the classes are not marked present "
                     "and do not grow")
    if parts:
        warnings.warn(f"cue file {source} ({num_images} images): " + "; ".join(parts)
                      + "; all as the DSRG release's AnnotationLayer treats them", CueFileWarning, stacklevel=3)


def _load_npz(path):
    try:
        return _read_npz(path)
    except (ValueError, OSError, EOFError, KeyError) as error:
        if str(path) in str(error):
            raise
        raise ValueError(f"{path}: cannot read the cue .npz ({type(error).__name__}: {error})") from None


def _read_npz(path):
    with np.load(path, allow_pickle=False) as archive:
        expected = {"format", "image_ids", "label_offsets", "labels", "cue_offsets", "cues"}
        missing = expected - set(archive.files)
        if missing:
            raise ValueError(f"{path}: not a DSRG cue .npz, missing arrays {sorted(missing)}")
        if str(archive["format"]) != NPZ_FORMAT:
            raise ValueError(f"{path}: cue .npz format {str(archive['format'])!r}, expected {NPZ_FORMAT!r}")
        image_ids = archive["image_ids"]
        label_offsets = archive["label_offsets"]
        labels = archive["labels"]
        cue_offsets = archive["cue_offsets"]
        cues = archive["cues"]
    count = len(image_ids)
    if label_offsets.shape != (count + 1,) or cue_offsets.shape != (count + 1,):
        raise ValueError(f"{path}: offsets must have {count + 1} entries, got {label_offsets.shape} and "
                         f"{cue_offsets.shape}")
    if cues.ndim != 2 or cues.shape[0] != 3:
        raise ValueError(f"{path}: 'cues' must have shape 3×K, got {cues.shape}")
    mapping = {}
    for position, image_id in enumerate(image_ids.tolist()):
        mapping[f"{image_id}_labels"] = labels[label_offsets[position]:label_offsets[position + 1]].astype(np.int64)
        mapping[f"{image_id}_cues"] = cues[:, cue_offsets[position]:cue_offsets[position + 1]].astype(np.int64)
    return mapping


def load_cues(path):
    """Read a cue file (.pickle/.pkl, optionally .gz, or .npz) into the official dict.

    Returns ``{"%i_labels": int64 (L,), "%i_cues": int64 (3, K)}``. Pickles go through the
    restricted unpickler (:class:`UnsafePickleError` names the file and the refused global).
    Malformed structure is a ValueError; data the release accepts but the format does not intend
    gives one :class:`CueFileWarning` with counts (module doc).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cue file not found: {path}")
    suffix = _base_suffix(path)
    if suffix == ".npz" and not _is_gzip(path):
        mapping = _validate_mapping(_load_npz(path), path)
    elif suffix not in PICKLE_SUFFIXES:
        raise ValueError(f"{path}: unknown cue file type; expected .pickle, .pkl (optionally .gz) or .npz")
    else:
        try:
            data = read_gzip_bounded(path) if _is_gzip(path) else path.read_bytes()
        except (OSError, EOFError) as error:
            raise ValueError(f"{path}: cannot read cue file ({error})") from error
        mapping = _validate_mapping(restricted_unpickle_bytes(data, str(path)), path)
    _warn_release_quirks(mapping, path)
    return mapping


def _npz_bytes(mapping, source):
    ids = set()
    for key in mapping:
        ids.add(int(_KEY_PATTERN.match(key).group(1)))
    image_ids = np.array(sorted(ids), dtype=np.int64)
    label_parts, cue_parts = [], []
    for image_id in image_ids.tolist():
        if f"{image_id}_labels" not in mapping or f"{image_id}_cues" not in mapping:
            raise ValueError(f"{source}: image {image_id} needs both '{image_id}_labels' and '{image_id}_cues'")
        label_parts.append(mapping[f"{image_id}_labels"])
        cue_parts.append(mapping[f"{image_id}_cues"])
    label_offsets = np.concatenate([[0], np.cumsum([len(part) for part in label_parts])]).astype(np.int64)
    cue_offsets = np.concatenate([[0], np.cumsum([part.shape[1] for part in cue_parts])]).astype(np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        format=np.array(NPZ_FORMAT),
        image_ids=image_ids,
        label_offsets=label_offsets,
        labels=np.concatenate(label_parts) if label_parts else np.zeros(0, np.int64),
        cue_offsets=cue_offsets,
        cues=np.concatenate(cue_parts, axis=1) if cue_parts else np.zeros((3, 0), np.int64),
    )
    return buffer.getvalue()


class _Python2CompatiblePickler(pickle._Pickler):
    """Protocol-2 pickler naming numpy's array reconstructor ``numpy.core.multiarray`` (numpy 2 says
    ``numpy._core.multiarray``, a module that the numpy of the original Python 2 code does not have)."""

    _PY2_NAMES = {
        id(np._core.multiarray._reconstruct): b"numpy.core.multiarray\n_reconstruct\n",
        id(np._core.multiarray.scalar): b"numpy.core.multiarray\nscalar\n",
    }

    def save_global(self, obj, name=None):
        legacy_name = self._PY2_NAMES.get(id(obj))
        if legacy_name is None or self.proto > 2:
            super().save_global(obj, name)
            return
        self.write(pickle.GLOBAL + legacy_name)
        self.memoize(obj)


def _python2_pickle_bytes(mapping):
    buffer = io.BytesIO()
    _Python2CompatiblePickler(buffer, protocol=2).dump(mapping)
    return buffer.getvalue()


def save_cues(path, mapping):
    """Write `mapping` (official keys) atomically; the suffix picks the form.

    ``.pickle``/``.pkl``: the official pickle, protocol 2 so the original Python 2 code reads it too;
    gzip'd when the name ends with ``.gz``. ``.npz``: the flattened layout of this module's docstring.
    """
    path = Path(path)
    mapping = _validate_mapping(mapping, path)
    suffix = _base_suffix(path)
    if suffix == ".npz" and not _is_gzip(path):
        atomic_write_bytes(path, _npz_bytes(mapping, path))
        return
    if suffix not in PICKLE_SUFFIXES:
        raise ValueError(f"{path}: unknown cue file type; expected .pickle, .pkl (optionally .gz) or .npz")
    data = _python2_pickle_bytes(mapping)
    if _is_gzip(path):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write_bytes(path, data)


def image_cue_entry(mapping, image_index, num_classes, source="cue file"):
    """Foreground labels and cue rows of one image: returns (labels int64 (L,), cue_rows int64 (3, K)).

    labels: the distinct listed classes other than 0, increasing (what the release marks present
    besides the background); cue_rows: the file's columns, cues of unlisted classes included, as the
    release keeps them. An unknown index (a cue file made for other images) or a label outside
    0..num_classes-1 is a ValueError naming the source and the image.
    """
    labels_key, cues_key = f"{image_index}_labels", f"{image_index}_cues"
    if labels_key not in mapping or cues_key not in mapping:
        raise ValueError(f"{source}: no cues for image index {image_index} (keys {labels_key!r}, {cues_key!r}); "
                         "is it the cue file of these images?")
    labels = np.asarray(mapping[labels_key], dtype=np.int64).reshape(-1)
    cue_rows = np.asarray(mapping[cues_key], dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{source}: image {image_index} labels {labels.tolist()} must lie in "
                         f"0..{num_classes - 1} (foreground 1..{num_classes - 1}; background is implicit)")
    return np.unique(labels[labels != 0]), cue_rows


def dense_cues(cue_rows, num_classes, height, width):
    """Dense 0/1 cue map float32 (C, h, w) from (class, row, col) columns of shape 3×K."""
    cue_rows = np.asarray(cue_rows)
    if cue_rows.ndim != 2 or cue_rows.shape[0] != 3:
        raise ValueError(f"cue rows must have shape 3×K (class, row, col), got {cue_rows.shape}")
    if cue_rows.size and cue_rows.dtype.kind not in "iu":
        raise ValueError(f"cue rows must be integers, got dtype {cue_rows.dtype}")
    cue_rows = cue_rows.astype(np.int64)
    for axis, (name, limit) in enumerate((("class", num_classes), ("row", height), ("col", width))):
        values = cue_rows[axis]
        if values.size and (values.min() < 0 or values.max() >= limit):
            bad = values[(values < 0) | (values >= limit)]
            raise ValueError(f"cue {name} out of range: expected 0..{limit - 1}, got {bad[:5].tolist()}")
    cues = np.zeros((num_classes, height, width), dtype=np.float32)
    cues[cue_rows[0], cue_rows[1], cue_rows[2]] = 1.0
    return cues


def image_index_from_label(value, source="image ids"):
    """An ImageData label (float) as an integer image index; a fractional or negative value is an error."""
    index = int(round(float(value)))
    if index < 0 or index != float(value):
        raise ValueError(f"{source}: image index must be a non-negative integer, got {value!r}")
    return index


def resample_cues(cues, size):
    """Dense cues (…, C, g, g) on a size×size grid by aligned-corners nearest sampling of the cells.

    A cue file made for a 321 input lives on the 41×41 score grid; a smaller input needs its cues
    on its own grid (161 → 21×21: cell j takes cell 2j).
    """
    cues = np.asarray(cues)
    if cues.shape[-1] == size and cues.shape[-2] == size:
        return cues
    rows = aligned_corner_indices(cues.shape[-2], size)
    cols = aligned_corner_indices(cues.shape[-1], size)
    return cues[..., rows[:, None], cols[None, :]]


def annotation_batch(mapping, image_indices, num_classes, cue_size, source="cue file", file_cue_size=None):
    """Image labels (N, 1, 1, C) and dense cues (N, C, s, s), float32, for a batch of image indices.

    labels[n, 0, 0, 0] = 1 (background) and labels[n, 0, 0, c] = 1 for every listed class c; cues
    are the 0/1 maps of :func:`dense_cues` on the file's grid (`file_cue_size`, default s), brought
    to the s×s grid by :func:`resample_cues`. Unknown indices, labels out of range and cues outside
    the file's grid or the classes are errors naming `source` and the image; cues of classes not in
    the labels stay in the map, as in the release (:func:`image_cue_entry`).
    """
    file_cue_size = cue_size if file_cue_size is None else file_cue_size
    labels = np.zeros((len(image_indices), 1, 1, num_classes), dtype=np.float32)
    cues = np.zeros((len(image_indices), num_classes, cue_size, cue_size), dtype=np.float32)
    for position, image_index in enumerate(image_indices):
        image_labels, cue_rows = image_cue_entry(mapping, image_index, num_classes, source)
        labels[position, 0, 0, 0] = 1.0
        labels[position, 0, 0, image_labels] = 1.0
        try:
            cues[position] = resample_cues(dense_cues(cue_rows, num_classes, file_cue_size, file_cue_size),
                                           cue_size)
        except ValueError as error:
            raise ValueError(f"{source}: image {image_index}: {error}") from error
    return labels, cues
