"""Broken and hostile inputs that used to exhaust memory, abort, run code or pass silently: each is now
a clear error naming the file (and the image, layer or key) before anything large is allocated."""
import gzip
import pickle
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from caffe_helpers import REPO_ROOT
from dsrg import cues as cue_module
from dsrg.cues import UnsafePickleError, load_cues, release_quirks
from dsrg.datacheck import check_image
from dsrg.fileio import MAX_IMAGE_SIDE, read_label_png, read_rgb
from dsrg.params import parse_param_str
from dsrg.seeds import cue_seed_masks
from dsrg.weights import WeightsError, keras_h5_convolutions, read_hed_trunk
from pylayers.layer import ImageSegDataLayer
from pylayers.layers import AnnotationLayer, DSRGLayer
from pylayers.netio import check_layer_modules


def huge_array_pickle():
    """A few hundred bytes whose numpy.ndarray call claims a 10^10-value array."""
    class Claim:
        def __reduce__(self):
            return np.ndarray, ((100_000, 100_000), np.dtype(np.int64))
    return pickle.dumps({"0_labels": Claim(), "0_cues": np.zeros((3, 0), np.int64)}, protocol=2)


def test_a_pickle_claiming_a_huge_array_is_refused_before_allocation(tmp_path):
    path = tmp_path / "bomb.pickle"
    path.write_bytes(huge_array_pickle())
    assert path.stat().st_size < 1000
    with pytest.raises(UnsafePickleError, match=r"bomb\.pickle: array shape \(100000, 100000\) "
                                                r"\(10,000,000,000 values\) exceeds the 3,000,000 values"):
        load_cues(path)


def test_too_many_labels_or_cues_name_the_file_and_the_image(tmp_path):
    path = tmp_path / "many.pickle.gz"
    mapping = {"0_labels": np.array([1]), "0_cues": np.zeros((3, 2), np.int64),
               "7_labels": np.arange(5000) % 21, "7_cues": np.zeros((3, 1_000_000), np.int64)}
    path.write_bytes(gzip.compress(pickle.dumps(mapping, protocol=2)))
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"many\.pickle\.gz: image 7 lists 5000 labels \('7_labels'\); an image "
                                         r"lists at most 256"):
        load_cues(path)
    mapping["7_labels"] = np.array([1, 2])
    mapping["7_cues"] = np.zeros((3, 1_000_001), np.int64)
    path.write_bytes(gzip.compress(pickle.dumps(mapping, protocol=2)))
    with pytest.raises(ValueError, match=r"many\.pickle\.gz: image 7 has 1,000,001 cues \('7_cues'\)"):
        load_cues(path)


def test_the_quirk_count_works_per_image_without_an_outer_product():
    mapping = {"0_labels": np.arange(200) % 21, "0_cues": np.stack([np.arange(500_000) % 25,
                                                                     np.zeros(500_000, np.int64),
                                                                     np.zeros(500_000, np.int64)])}
    counts = release_quirks(mapping)
    assert counts["unlisted_cue_images"] == 1 and counts["unlisted_cues"] == 4 * 20_000
    assert counts["label_zero"] == 1 and counts["repeated_labels"] == 1


def test_a_gzip_that_expands_past_the_bound_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "expands.pickle.gz"
    path.write_bytes(gzip.compress(b"\0" * 5_000_000))
    monkeypatch.setattr(cue_module, "MAX_CUE_FILE_BYTES", 1_000_000)
    with pytest.raises(ValueError, match=r"expands\.pickle\.gz: decompresses to more than 1,000,000 bytes"):
        load_cues(path)


def test_object_arrays_in_a_cue_npz_name_the_file(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, format=np.array("dsrg-cues-v1"), image_ids=np.array([0]), label_offsets=np.array([0, 1]),
             labels=np.array([{"not": "a label"}], dtype=object), cue_offsets=np.array([0, 0]),
             cues=np.zeros((3, 0), np.int64))
    with pytest.raises(ValueError, match=r"objects\.npz: cannot read the cue \.npz \(ValueError: Object arrays"):
        load_cues(path)
    pickled = tmp_path / "objects.pickle"
    pickled.write_bytes(pickle.dumps({"0_labels": np.array([object()], dtype=object)}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"objects\.pickle: .*object"):
        load_cues(pickled)


def test_cue_positions_out_of_the_grid_name_the_file_and_the_image():
    mapping = {"4_labels": np.array([2]), "4_cues": np.array([[2], [50], [0]])}
    with pytest.raises(ValueError, match=r"cues\.pickle: image 4 \(41×41 grid\): cue row out of range: expected "
                                         r"0\.\.40, got \[50\]"):
        cue_seed_masks(mapping, 4, 21, 41, source="cues.pickle")
    with pytest.raises(ValueError, match=r"cues\.pickle: no cues for image index 9 .*is it the cue file"):
        cue_seed_masks(mapping, 9, 21, 41, source="cues.pickle")


@pytest.mark.parametrize("schema_of, param_str, message", [
    (DSRGLayer, "{'th1': 1e999}", "key 'th1' must be a finite number, got inf"),
    (DSRGLayer, "{'th1': 5}", "key 'th1' must be in 0..1, got 5"),
    (DSRGLayer, "{'th2': -3}", "key 'th2' must be in 0..1, got -3"),
    (DSRGLayer, "{'th1': 0.9, 'th1': 0.5}", "key 'th1' is given twice"),
    (AnnotationLayer, "{'cues': 'c.pickle', 'num_classes': -1}", "key 'num_classes' must be in 2..256, got -1"),
    (AnnotationLayer, "{'cues': 'c.pickle', 'cue_size': 0}", f"key 'cue_size' must be in 1..{MAX_IMAGE_SIDE}, got 0"),
    (ImageSegDataLayer, "{'batch_size': 0, 'source': 's', 'mean': (1, 2, 3), 'crop_size': 5}",
     "key 'batch_size' must be at least 1, got 0"),
    (ImageSegDataLayer, "{'batch_size': 2, 'source': 's', 'mean': (1, 2), 'crop_size': 5}",
     "key 'mean' must be 3 numbers, each finite, got (1, 2)"),
    (ImageSegDataLayer, "{'batch_size': 2, 'source': 's', 'mean': (1, 2, 3), 'crop_size': (321, 0)}",
     f"key 'crop_size' must be in 1..{MAX_IMAGE_SIDE}, got (321, 0)"),
])
def test_layer_parameters_out_of_range_name_the_layer_key_and_values(schema_of, param_str, message):
    with pytest.raises(ValueError, match="^layer " + schema_of.__name__ + ": param_str " + message.replace(
            "(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_param_str(schema_of.__name__, param_str, schema_of.param_schema)


def test_only_the_projects_layer_modules_may_be_named(tmp_path, capsys, monkeypatch):
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "zen" type: "Python" top: "x" python_param { module: "this" layer: "L" } }\n')
    with pytest.raises(ValueError, match=r"net\.prototxt: layer zen: python_param module 'this' is not one of the "
                                         r"project's layer modules \(pylayers, pylayers\.layer, pylayers\.layers\)"):
        check_layer_modules(net)
    assert "Beautiful is better" not in capsys.readouterr().out
    monkeypatch.setenv("DSRG_EXTRA_LAYER_MODULES", "mine, this")
    check_layer_modules(net)
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 1\n')
    monkeypatch.delenv("DSRG_EXTRA_LAYER_MODULES")
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "train.py"), "--solver", str(solver),
                           "--out", str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and "python_param module 'this'" in done.stderr
    assert "Beautiful is better" not in done.stdout + done.stderr


def png_header_claiming(width, height):
    """A PNG whose IHDR claims width × height (one tiny IDAT): PIL reads the size without decoding."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def test_images_beyond_the_size_limit_name_the_file_and_both_sizes(tmp_path):
    claimed = tmp_path / "claims.png"
    claimed.write_bytes(png_header_claiming(60000, 60000))
    with pytest.raises(ValueError, match=r"claims\.png: .*60000"):
        read_rgb(claimed)
    wide = tmp_path / "wide.png"
    Image.new("L", (MAX_IMAGE_SIDE + 1, 2)).save(wide)
    expected = (rf"wide\.png: image is {MAX_IMAGE_SIDE + 1}×2 pixels, larger than the {MAX_IMAGE_SIDE}×"
                rf"{MAX_IMAGE_SIDE} the tools accept")
    with pytest.raises(ValueError, match=expected):
        read_rgb(wide)
    with pytest.raises(ValueError, match=expected):
        read_label_png(wide)
    size, problem = check_image(wide)
    assert size is None and problem.startswith(f"image is {MAX_IMAGE_SIDE + 1}×2 pixels")
    Image.new("RGB", (MAX_IMAGE_SIDE, 2)).save(tmp_path / "fits.png")
    assert read_rgb(tmp_path / "fits.png").shape == (2, MAX_IMAGE_SIDE, 3)


def test_truncated_or_random_h5_files_name_the_file(tmp_path):
    random_bytes = tmp_path / "random.h5"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    for reader in (keras_h5_convolutions, read_hed_trunk):
        with pytest.raises(WeightsError, match=r"random\.h5: not a readable"):
            reader(random_bytes)


def test_make_train_list_on_an_empty_list_is_an_error_without_a_traceback(tmp_path):
    (tmp_path / "ids.txt").write_text("\n")
    (tmp_path / "input.txt").write_text("a.jpg 0\n")
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "make_train_list.py"), "--ids",
                           str(tmp_path / "ids.txt"), "--input-list", str(tmp_path / "input.txt"), "--out",
                           str(tmp_path / "out.txt")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"make_train_list.py: error: {tmp_path / 'ids.txt'}: the image list is empty" in done.stderr
