"""Cue files: restricted unpickling, pickle/npz round trips, the converter, dense maps, batch annotation."""
import gzip
import io
import os
import pickle
import pickletools
import warnings

import numpy as np
import pytest

from caffe_helpers import REPO_ROOT, SHARED_VOC12
from dsrg.cues import (
    CueFileWarning,
    UnsafePickleError,
    annotation_batch,
    dense_cues,
    image_cue_entry,
    image_index_from_label,
    load_cues,
    release_quirks,
    resample_cues,
    save_cues,
)


def small_mapping():
    return {
        "0_labels": np.array([3]),
        "0_cues": np.array([[0, 0, 3, 3], [0, 1, 2, 2], [0, 0, 1, 2]]),
        "5_labels": np.array([1, 4]),
        "5_cues": np.array([[1, 4, 4], [0, 3, 3], [3, 0, 1]]),
    }


def assert_same_mapping(loaded, expected):
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        assert loaded[key].dtype == np.int64
        np.testing.assert_array_equal(loaded[key], value)


@pytest.mark.parametrize("name", ["cues.pickle", "cues.pkl", "cues.pickle.gz", "cues.npz"])
def test_round_trip(tmp_path, name):
    save_cues(tmp_path / name, small_mapping())
    assert_same_mapping(load_cues(tmp_path / name), small_mapping())
    assert [p.name for p in tmp_path.iterdir()] == [name]   # no temporary file left behind


@pytest.mark.parametrize("name", ["cues.pickle", "cues.npz"])
def test_round_trip_of_empty_arrays(tmp_path, name):
    # An image without foreground labels or without cues: protocol 2 pickles empty arrays' data as
    # __builtin__.bytes, which the restricted unpickler must admit.
    mapping = {"0_labels": np.zeros(0, np.int64), "0_cues": np.zeros((3, 0), np.int64)}
    save_cues(tmp_path / name, mapping)
    assert_same_mapping(load_cues(tmp_path / name), mapping)


def test_pickle_is_protocol_2_with_python2_names(tmp_path):
    save_cues(tmp_path / "cues.pickle.gz", small_mapping())
    data = gzip.decompress((tmp_path / "cues.pickle.gz").read_bytes())
    assert data[:2] == b"\x80\x02"
    globals_used = {arg for op, arg, _ in pickletools.genops(io.BytesIO(data)) if op.name == "GLOBAL"}
    assert "numpy.core.multiarray _reconstruct" in globals_used
    assert not any(name.startswith("numpy._core") for name in globals_used)
    plain = pickle.loads(data, encoding="latin1")   # trusted here: we just wrote it
    assert_same_mapping({k: np.asarray(v, dtype=np.int64) for k, v in plain.items()}, small_mapping())


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("suffix", [".pickle", ".pickle.gz"])
def test_code_executing_pickle_is_refused_and_leaves_no_trace(tmp_path, suffix):
    marker = tmp_path / "marker"
    payload = pickle.dumps({"0_labels": _RunsCommand(f"touch {marker}")}, protocol=2)
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(gzip.compress(payload) if suffix.endswith(".gz") else payload)
    with pytest.raises(UnsafePickleError) as error:
        load_cues(path)
    assert str(path) in str(error.value)
    assert "posix.system" in str(error.value) or "os.system" in str(error.value)
    assert not marker.exists()


def test_object_arrays_and_other_globals_are_refused(tmp_path):
    path = tmp_path / "objects.pickle"
    path.write_bytes(pickle.dumps({"0_labels": np.array([1, None], dtype=object)}, protocol=2))
    with pytest.raises(UnsafePickleError, match="object dtype"):
        load_cues(path)
    path.write_bytes(pickle.dumps({"0_labels": __import__("collections").OrderedDict()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        load_cues(path)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pickle"):
        load_cues(tmp_path / "missing.pickle")
    (tmp_path / "cues.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown cue file type"):
        load_cues(tmp_path / "cues.txt")
    (tmp_path / "broken.pickle").write_bytes(b"\x80\x02}q\x00")
    with pytest.raises(ValueError, match="broken.pickle"):
        load_cues(tmp_path / "broken.pickle")
    (tmp_path / "keys.pickle").write_bytes(pickle.dumps({"labels_0": np.array([1])}, protocol=2))
    with pytest.raises(ValueError, match="unexpected key 'labels_0'"):
        load_cues(tmp_path / "keys.pickle")
    (tmp_path / "shape.pickle").write_bytes(pickle.dumps({"0_cues": np.zeros((2, 3), int)}, protocol=2))
    with pytest.raises(ValueError, match=r"must have shape 3×K"):
        load_cues(tmp_path / "shape.pickle")


@pytest.mark.parametrize("mapping, message", [
    ({"0_labels": np.array([1]), "0_cues": np.array([[1], [0], [0]]), "1_labels": np.array([2])},
     r"image 1 has '1_labels' but no '1_cues'"),
    ({"3_cues": np.array([[0], [0], [0]])}, r"image 3 has '3_cues' but no '3_labels'"),
    ({"0_labels": np.array([1.0]), "0_cues": np.array([[1], [0], [0]])}, r"'0_labels' must be an integer array"),
    ({"0_labels": np.array([1]), "0_cues": np.array([[1.5], [0], [0]])}, r"'0_cues' must be an integer array"),
    ({"0_labels": np.array([1]), "0_cues": np.zeros((3, 2, 1), int)}, r"'0_cues' must have shape 3×K"),
])
def test_malformed_files_are_errors_naming_file_and_image(tmp_path, mapping, message):
    path = tmp_path / "bad.pickle"
    path.write_bytes(pickle.dumps(mapping, protocol=2))
    with pytest.raises(ValueError, match=message) as error:
        load_cues(path)
    assert str(path) in str(error.value)


def test_converter_round_trip_and_skip(tmp_path, capsys):
    from tools.convert_cues import main

    save_cues(tmp_path / "cues.pickle.gz", small_mapping())
    assert main([str(tmp_path / "cues.pickle.gz"), str(tmp_path / "cues.npz")]) == 0
    assert main([str(tmp_path / "cues.npz"), str(tmp_path / "back.pickle")]) == 0
    assert_same_mapping(load_cues(tmp_path / "back.pickle"), small_mapping())
    stamp = (tmp_path / "cues.npz").stat().st_mtime_ns
    assert main([str(tmp_path / "cues.pickle.gz"), str(tmp_path / "cues.npz")]) == 0
    assert "skipping" in capsys.readouterr().out
    assert (tmp_path / "cues.npz").stat().st_mtime_ns == stamp


def test_dense_cues():
    cues = dense_cues(np.array([[0, 2, 2], [1, 0, 0], [1, 3, 3]]), 3, 2, 4)
    assert cues.dtype == np.float32 and cues.shape == (3, 2, 4)
    assert cues.sum() == 2 and cues[0, 1, 1] == 1 and cues[2, 0, 3] == 1   # a repeated seed counts once
    with pytest.raises(ValueError, match=r"cue row out of range: expected 0\.\.1, got \[2\]"):
        dense_cues(np.array([[0], [2], [0]]), 3, 2, 4)
    with pytest.raises(ValueError, match=r"cue class out of range: expected 0\.\.2, got \[3\]"):
        dense_cues(np.array([[3], [0], [0]]), 3, 2, 4)
    with pytest.raises(ValueError, match=r"cue col out of range"):
        dense_cues(np.array([[0], [0], [-1]]), 3, 2, 4)
    with pytest.raises(ValueError, match="3×K"):
        dense_cues(np.zeros((2, 1), int), 3, 2, 4)


def test_image_entries_are_validated():
    mapping = small_mapping()
    labels, rows = image_cue_entry(mapping, 5, 5)
    assert labels.tolist() == [1, 4] and rows.shape == (3, 3)
    with pytest.raises(ValueError, match="no cues for image index 7"):
        image_cue_entry(mapping, 7, 5)
    with pytest.raises(ValueError, match=r"image 5 labels \[1, 4\] must lie in 0\.\.3"):
        image_cue_entry(mapping, 5, 4)
    mapping["5_labels"] = np.array([1, -1])
    with pytest.raises(ValueError, match=r"image 5 labels \[1, -1\] must lie in 0\.\.4"):
        image_cue_entry(mapping, 5, 5)


def test_image_entries_take_what_the_release_takes():
    # label 0 and a repeated label change nothing; cues of an unlisted class (4) are kept
    mapping = {"5_labels": np.array([3, 0, 1, 3]), "5_cues": np.array([[1, 4, 0], [0, 3, 3], [3, 0, 1]])}
    labels, rows = image_cue_entry(mapping, 5, 5)
    assert labels.tolist() == [1, 3]
    np.testing.assert_array_equal(rows, mapping["5_cues"])
    assert image_cue_entry({"0_labels": np.array([0]), "0_cues": np.zeros((3, 0), int)}, 0, 5)[0].size == 0


def release_annotation(mapping, image_indices, num_classes, cue_size):
    """What the release's AnnotationLayer.forward writes (pylayers/pylayers.py: labels[0] and the
    listed labels set to 1 by fancy indexing, every cue column set to 1 whatever its class)."""
    labels = np.zeros((len(image_indices), 1, 1, num_classes), np.float32)
    cues = np.zeros((len(image_indices), num_classes, cue_size, cue_size), np.float32)
    for position, index in enumerate(image_indices):
        labels[position, 0, 0, 0] = 1.0
        labels[position, 0, 0, mapping[f"{index}_labels"]] = 1.0
        rows = mapping[f"{index}_cues"]
        cues[position, rows[0], rows[1], rows[2]] = 1.0
    return labels, cues


def quirky_mapping(rng, num_images, num_classes, size):
    mapping = {}
    for index in range(num_images):
        labels = rng.integers(0, num_classes, rng.integers(0, 4))   # 0 and repeats happen
        count = rng.integers(0, 12)
        mapping[f"{index}_labels"] = labels
        mapping[f"{index}_cues"] = np.stack([rng.integers(0, num_classes, count),
                                             rng.integers(0, size, count), rng.integers(0, size, count)])
    return mapping


def test_annotation_batch_equals_the_release_on_quirky_data():
    rng = np.random.default_rng(3)
    mapping = quirky_mapping(rng, 40, 6, 5)
    quirks = release_quirks(mapping)
    assert quirks["label_zero"] and quirks["repeated_labels"] and quirks["unlisted_cue_images"]
    indices = rng.permutation(40)[:16].tolist()
    labels, cues = annotation_batch(mapping, indices, 6, 5)
    expected_labels, expected_cues = release_annotation(mapping, indices, 6, 5)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(cues, expected_cues)


def test_release_quirks_counts():
    mapping = {"0_labels": np.array([0, 2]), "0_cues": np.array([[0, 2], [0, 1], [0, 1]]),
               "1_labels": np.array([1, 1]), "1_cues": np.array([[3, 3, 1, 0], [0, 1, 2, 3], [0, 0, 0, 0]]),
               "2_labels": np.array([1]), "2_cues": np.array([[2, 1], [0, 0], [0, 1]]),
               "3_labels": np.zeros(0, np.int64), "3_cues": np.zeros((3, 0), np.int64)}
    assert release_quirks(mapping) == {"label_zero": 1, "repeated_labels": 1, "unlisted_cue_images": 2,
                                       "unlisted_cues": 3}


def test_a_file_with_release_quirks_loads_with_one_warning_with_counts(tmp_path):
    mapping = {"0_labels": np.array([0, 2]), "0_cues": np.array([[0, 2], [0, 1], [0, 1]]),
               "1_labels": np.array([1, 1]), "1_cues": np.array([[3, 3, 1, 0], [0, 1, 2, 3], [0, 0, 0, 0]]),
               "2_labels": np.array([2, 0]), "2_cues": np.array([[2], [0], [0]])}
    path = tmp_path / "localization_cues-sal.pickle"
    save_cues(path, mapping)
    with pytest.warns(CueFileWarning) as record:
        loaded = load_cues(path)
    assert len(record) == 1
    message = str(record[0].message)
    assert str(path) in message and "(3 images)" in message
    assert "2 images list label 0" in message
    assert "1 images list a label more than once" in message
    assert "1 images have 2 cues of classes not in their labels" in message
    assert_same_mapping(loaded, mapping)
    labels, cues = annotation_batch(loaded, [1, 0], 4, 4)
    assert labels[:, 0, 0].tolist() == [[1, 1, 0, 0], [1, 0, 1, 0]]
    assert cues[0, 3, 0, 0] == 1 and cues[0, 3, 1, 0] == 1   # class 3 is unlisted: its cues stay


def test_a_clean_file_loads_without_warning(tmp_path):
    save_cues(tmp_path / "cues.pickle", small_mapping())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_cues(tmp_path / "cues.pickle")


def test_annotation_batch():
    labels, cues = annotation_batch(small_mapping(), [5, 0], 5, 4)
    assert labels.shape == (2, 1, 1, 5) and cues.shape == (2, 5, 4, 4)
    assert labels[0, 0, 0].tolist() == [1, 1, 0, 0, 1] and labels[1, 0, 0].tolist() == [1, 0, 0, 1, 0]
    assert cues[0, 1, 0, 3] == 1 and cues[0, 4, 3, 0] == 1 and cues[0, 4, 3, 1] == 1 and cues[0].sum() == 3
    assert cues[1, 3, 2, 1] == 1 and cues[1, 3, 2, 2] == 1 and cues[1].sum() == 4
    with pytest.raises(ValueError, match="image 5: cue row out of range"):
        annotation_batch(small_mapping(), [5], 5, 3)
    with pytest.raises(ValueError, match=r"image 5: cue class out of range: expected 0\.\.3, got \[4, 4\]"):
        annotation_batch({"5_labels": np.array([1]), "5_cues": small_mapping()["5_cues"]}, [5], 4, 4)


def test_resample_cues_takes_every_second_cell_from_41_to_21():
    cues = np.zeros((2, 41, 41), dtype=np.float32)
    cues[1, 2 * 7, 2 * 13] = 1.0
    cues[0, 2 * 20, 0] = 1.0
    cues[1, 3, 5] = 1.0
    small = resample_cues(cues, 21)
    assert small.shape == (2, 21, 21)
    assert np.argwhere(small[1]).tolist() == [[7, 13]]
    assert np.argwhere(small[0]).tolist() == [[20, 0]]
    assert resample_cues(cues, 41) is cues


def test_annotation_batch_on_a_smaller_grid_than_the_file():
    mapping = {"0_labels": np.array([1]), "0_cues": np.array([[0, 0, 1], [2, 40, 40], [2, 21, 20]])}
    labels, cues = annotation_batch(mapping, [0], 4, 21, file_cue_size=41)
    assert cues.shape == (1, 4, 21, 21)
    assert np.argwhere(cues[0]).tolist() == [[0, 1, 1], [1, 20, 10]]
    assert labels[0, 0, 0].tolist() == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="row out of range"):
        annotation_batch(mapping, [0], 4, 21)


def test_image_index_from_label():
    assert image_index_from_label(np.float32(12.0)) == 12
    with pytest.raises(ValueError, match="non-negative integer"):
        image_index_from_label(1.5)
    with pytest.raises(ValueError, match="non-negative integer"):
        image_index_from_label(-1.0)


def test_real_sec_cues_load_safely():
    path = SHARED_VOC12 / "localization_cues-sec.pickle.gz"
    if not path.is_file():
        pytest.skip(f"shared VOC12 data absent ({path})")
    mapping = load_cues(path)
    input_list = (SHARED_VOC12 / "lists" / "input_list.txt").read_text().split("\n")
    num_images = sum(1 for line in input_list if line.strip())
    assert len(mapping) == 2 * num_images
    for index in (0, 1, num_images - 1):
        labels, rows = image_cue_entry(mapping, index, 21)
        assert labels.size >= 1
        cues = dense_cues(rows, 21, 41, 41)
        assert cues[0].sum() > 0   # every SEC image has background cues
    assert REPO_ROOT.joinpath("training", "dsrg", "cues.py").is_file()
