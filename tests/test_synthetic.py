"""The synthetic demo data set: determinism, VOC/official-cue format round trip, cue statistics."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from caffe_helpers import load_tool
from dsrg.cues import image_cue_entry, load_cues
from dsrg.fileio import read_label_png
from dsrg.seeds import SeedQuality, labels_to_seed_masks, sample_labels_on_grid
from dsrg.synthetic import CLASS_NAMES, generate_split

REPO = Path(__file__).resolve().parents[1]
make_demo_data = load_tool("make_demo_data")

SMALL = ["--train", "8", "--val", "3", "--size", "96", "--cue-size", "13", "--quiet"]


def _files(root):
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "seed7"
    make_demo_data.main(["--out", str(root), "--seed", "7"] + SMALL)
    return root


def test_same_seed_gives_identical_bytes_and_another_seed_differs(demo, tmp_path):
    make_demo_data.main(["--out", str(tmp_path / "again"), "--seed", "7"] + SMALL)
    make_demo_data.main(["--out", str(tmp_path / "other"), "--seed", "8"] + SMALL)
    first, again, other = _files(demo), _files(tmp_path / "again"), _files(tmp_path / "other")
    assert first == again
    assert first.keys() == other.keys()
    images = [name for name in first if name.startswith("JPEGImages/")]
    assert sum(first[name] != other[name] for name in images) == len(images)
    assert first["localization_cues.pickle.gz"] != other["localization_cues.pickle.gz"]


def test_layout_lists_and_dataset_json(demo):
    train_ids = (demo / "lists" / "train_id.txt").read_text().split()
    val_ids = (demo / "lists" / "val_id.txt").read_text().split()
    assert len(train_ids) == 8 and len(val_ids) == 3 and not set(train_ids) & set(val_ids)
    input_list = (demo / "lists" / "input_list.txt").read_text().splitlines()
    assert input_list == [f"{name}.jpg {index}" for index, name in enumerate(train_ids)]
    assert (demo / "classes.txt").read_text().split() == list(CLASS_NAMES)
    info = json.loads((demo / "dataset.json").read_text())
    assert info["class_names"] == list(CLASS_NAMES) and info["num_classes"] == 7
    assert info["cue_grid"] == [13, 13] and info["image_size"] == [96, 96]
    assert (info["seed"], info["train"], info["val"]) == (7, 8, 3)
    assert 0 < info["cue_quality"]["precision"] <= 100
    for name in train_ids + val_ids:
        with Image.open(demo / "JPEGImages" / f"{name}.jpg") as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (96, 96)
        with Image.open(demo / "SegmentationClass" / f"{name}.png") as label:
            assert label.mode == "P" and label.size == (96, 96)


def test_no_cues_writes_the_same_images_and_labels_and_no_cue_file(demo, tmp_path, capsys):
    out = tmp_path / "labels-only"
    make_demo_data.main(["--out", str(out), "--seed", "7", "--no-cues"] + SMALL[:-1])
    assert "synthetic cues" not in capsys.readouterr().out
    written, with_cues = _files(out), _files(demo)
    assert "localization_cues.pickle.gz" not in written
    for name, data in written.items():
        if name != "dataset.json":
            assert with_cues[name] == data, name
    info = json.loads((out / "dataset.json").read_text())
    assert info["cue_file"] is None and info["cue_quality"] is None and info["generator_cues"] is False


def test_cue_file_round_trip_agrees_with_the_ground_truth(demo):
    cues = load_cues(demo / "localization_cues.pickle.gz")
    train_ids = (demo / "lists" / "train_id.txt").read_text().split()
    assert len(cues) == 2 * len(train_ids)
    for index, name in enumerate(train_ids):
        labels, rows = image_cue_entry(cues, index, len(CLASS_NAMES), "demo cues")
        gt = read_label_png(demo / "SegmentationClass" / f"{name}.png")
        present = set(np.unique(gt).tolist())
        assert present <= set(range(len(CLASS_NAMES))) | {255}
        assert 255 in present and 0 in present  # boundary band and background
        assert sorted(present - {0, 255}) == labels.tolist()
        assert rows.shape[0] == 3 and rows.shape[1] > 0
        assert rows[1].min() >= 0 and rows[1].max() < 13 and rows[2].min() >= 0 and rows[2].max() < 13
        assert set(rows[0].tolist()) <= {0} | set(labels.tolist())
        assert (rows[0] == 0).any()
        cells = set(zip(rows[1].tolist(), rows[2].tolist()))
        assert len(cells) == rows.shape[1]  # one class per cell, as in the SEC cues
    for name in (demo / "lists" / "val_id.txt").read_text().split():
        assert set(np.unique(read_label_png(demo / "SegmentationClass" / f"{name}.png"))) <= set(range(7)) | {255}


def test_boundary_band_is_thin(demo):
    name = (demo / "lists" / "train_id.txt").read_text().split()[0]
    gt = read_label_png(demo / "SegmentationClass" / f"{name}.png")
    ignored = gt == 255
    assert 0.005 < ignored.mean() < 0.15
    # every ignored pixel lies within two pixels of a labelled one: the band is a thin line, not an area
    assert not (ignored & ~ndimage.binary_dilation(~ignored, iterations=2)).any()


def test_rerun_skips_and_other_arguments_are_refused(demo, capsys):
    before = _files(demo)
    make_demo_data.main(["--out", str(demo), "--seed", "7"] + SMALL)
    assert "already complete" in capsys.readouterr().out
    assert _files(demo) == before
    with pytest.raises(SystemExit, match="use another --out"):
        make_demo_data.main(["--out", str(demo), "--seed", "9"] + SMALL)


def test_cue_statistics_resemble_the_sec_cues():
    """On VOC the SEC cues measure (tools/seed_quality.py): background density 10 %, background precision
    93 %, foreground precision 68 %, foreground recall 33 %, one class per cell."""
    quality = SeedQuality(len(CLASS_NAMES))
    for _, _, gt, labels, cues in generate_split("train", 60, 0, 160, 21):
        seed_map = np.full((21, 21), 255, dtype=np.int64)
        seed_map[cues[1], cues[2]] = cues[0]
        quality.add(labels_to_seed_masks(seed_map, len(CLASS_NAMES)), sample_labels_on_grid(gt, 21, 21))
    summary = quality.summary()
    background = summary["per_class"][0]
    assert background["density"] == pytest.approx(10.0, abs=1.5)
    assert 85 < background["precision"] < 99
    assert 55 < summary["foreground"]["precision"] < 85
    assert 20 < summary["foreground"]["recall"] < 50
    assert summary["conflict"] == 0.0
