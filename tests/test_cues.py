"""Cue files: restricted unpickling, pickle/npz round trips, the converter, dense maps, batch annotation."""
import gzip
import io
import os
import pickle
import pickletools

import numpy as np
import pytest

from caffe_helpers import REPO_ROOT, SHARED_VOC12
from dsrg.cues import (
    UnsafePickleError,
    annotation_batch,
    dense_cues,
    image_cue_entry,
    image_index_from_label,
    load_cues,
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
    with pytest.raises(KeyError, match="no cues for image index 7"):
        image_cue_entry(mapping, 7, 5)
    with pytest.raises(ValueError, match=r"labels \[1, 4\] must lie in 1\.\.3"):
        image_cue_entry(mapping, 5, 4)
    mapping["5_labels"] = np.array([1])
    with pytest.raises(ValueError, match=r"cues of classes \[4\] that are not in its label list \[1\]"):
        image_cue_entry(mapping, 5, 5)


def test_annotation_batch():
    labels, cues = annotation_batch(small_mapping(), [5, 0], 5, 4)
    assert labels.shape == (2, 1, 1, 5) and cues.shape == (2, 5, 4, 4)
    assert labels[0, 0, 0].tolist() == [1, 1, 0, 0, 1] and labels[1, 0, 0].tolist() == [1, 0, 0, 1, 0]
    assert cues[0, 1, 0, 3] == 1 and cues[0, 4, 3, 0] == 1 and cues[0, 4, 3, 1] == 1 and cues[0].sum() == 3
    assert cues[1, 3, 2, 1] == 1 and cues[1, 3, 2, 2] == 1 and cues[1].sum() == 4
    with pytest.raises(ValueError, match="image 5: cue row out of range"):
        annotation_batch(small_mapping(), [5], 5, 3)


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
