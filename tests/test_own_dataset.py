"""Your own data set (docs/own-dataset.md): `EXP=custom-vgg16-smoke bash run.sh` on a tiny three-class folder
in VOC's own layout (ImageSets/Segmentation lists with CRLF line endings, classes.txt, image-level labels for
the training images, ground truth for the val images only), cues made from the image labels (CUES=generate);
the class count read from classes.txt into the nets; labels derived from training masks when a folder has
them and no label file; the one-line errors of an incomplete folder."""
import ast
import json
import os
import re
import subprocess
import time

import numpy as np
from PIL import Image

from caffe_helpers import REPO_ROOT, load_tool
from dsrg.cues import load_cues
from dsrg.fileio import atomic_save_label_png, read_label_png
from dsrg.imagelabels import read_image_labels

CLASS_NAMES = ["background", "disc", "square"]
COLOURS = {1: (220, 40, 40), 2: (40, 60, 220)}
# (classes, width, height) of each image: 12 training images, 4 val images, 64–80 pixels a side.
TRAIN_IMAGES = [((1,), 64, 72), ((2,), 80, 64), ((1, 2), 72, 80), ((1,), 80, 80), ((2,), 64, 64), ((1, 2), 76, 68),
                ((1,), 68, 76), ((2,), 72, 72), ((1, 2), 80, 72), ((2,), 66, 78), ((1,), 78, 66), ((1, 2), 70, 70)]
VAL_IMAGES = [((1,), 72, 64), ((2,), 64, 80), ((1, 2), 80, 76), ((1, 2), 68, 68)]


def textured_background(rng, height, width):
    """Grey-green noise over diagonal stripes of a random period."""
    rows, cols = np.mgrid[0:height, 0:width]
    stripes = ((rows + cols) // int(rng.integers(4, 9)) % 2)[..., None] * np.array([30, 40, 10])
    noise = rng.integers(0, 50, (height, width, 3))
    return (np.array([90, 110, 80]) + stripes + noise).astype(np.uint8)


def draw_image(rng, classes, width, height):
    """An image with a disc (class 1) and / or a square (class 2) on a textured background, and its label map."""
    pixels = textured_background(rng, height, width)
    labels = np.zeros((height, width), dtype=np.uint8)
    rows, cols = np.mgrid[0:height, 0:width]
    for slot, label in enumerate(classes):
        size = int(rng.integers(20, 28))
        left = int(rng.integers(2, width // 2 - size // 2)) + slot * (width // 2 - 2) // max(1, len(classes) - 1)
        left = min(left, width - size - 2)
        top = int(rng.integers(2, height - size - 2))
        if label == 1:
            radius = size / 2
            inside = (rows - top - radius) ** 2 + (cols - left - radius) ** 2 <= radius ** 2
        else:
            inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
        pixels[inside] = COLOURS[label]
        labels[inside] = label
    return pixels, labels


def crlf_lines(lines):
    return "".join(f"{line}\r\n" for line in lines).encode()


def make_own_dataset(root, train_masks=False, voc_lists=True, label_file=True):
    """The tiny three-class folder; returns ({training id: classes}, [val ids]).

    voc_lists: the ids in ImageSets/Segmentation/{train,val}.txt (CRLF), else in lists/{train,val}_id.txt.
    train_masks: SegmentationClass/ also holds the training images' label maps (always the val images').
    label_file: lists/train_image_labels.txt, the training images' classes."""
    rng = np.random.default_rng(7)
    (root / "JPEGImages").mkdir(parents=True)
    train, val = {}, []
    for split, images in (("train", TRAIN_IMAGES), ("val", VAL_IMAGES)):
        for number, (classes, width, height) in enumerate(images):
            name = f"{split}_{number:03d}"
            pixels, labels = draw_image(rng, classes, width, height)
            Image.fromarray(pixels).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
            if split == "val" or train_masks:
                atomic_save_label_png(root / "SegmentationClass" / f"{name}.png", labels)
            if split == "train":
                train[name] = classes
            else:
                val.append(name)
    if voc_lists:
        lists = root / "ImageSets" / "Segmentation"
        lists.mkdir(parents=True)
        (lists / "train.txt").write_bytes(crlf_lines(train))
        (lists / "val.txt").write_bytes(crlf_lines(val))
    else:
        (root / "lists").mkdir()
        (root / "lists" / "train_id.txt").write_text("".join(f"{name}\n" for name in train))
        (root / "lists" / "val_id.txt").write_text("".join(f"{name}\n" for name in val))
    (root / "classes.txt").write_bytes(crlf_lines(CLASS_NAMES))
    if label_file:
        (root / "lists").mkdir(exist_ok=True)
        (root / "lists" / "train_image_labels.txt").write_text(
            "".join(" ".join([name, *map(str, classes)]) + "\n" for name, classes in train.items()))
    return train, val


def run_sh(data, run_dir, *steps, exp="custom-vgg16-smoke", **extra_env):
    env = dict(os.environ, EXP=exp, PASCAL_DIR=str(data), RUN_DIR=str(run_dir), INIT_WEIGHTS_REQUIRED="0",
               DSRG_SKIP_SETUP="1", GPU="", GLOG_minloglevel="2")
    for name in ("CUES", "INIT_WEIGHTS", "INIT_WEIGHTS_SOURCE", "NUM_CLASSES", "EDITS", "TRAIN_GT",
                 "IMAGE_LABELS_NAME", "FUSE", "PSEUDO_RESTRICT"):
        env.pop(name, None)
    env.update(extra_env)
    return subprocess.run(["bash", str(REPO_ROOT / "run.sh"), *steps], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=900)


def test_a_three_class_folder_in_vocs_layout_runs_end_to_end_from_image_labels(tmp_path):
    data = tmp_path / "mine"
    train, val = make_own_dataset(data)
    run_dir = tmp_path / "run"
    started = time.monotonic()
    result = run_sh(data, run_dir)
    assert result.returncode == 0, f"run.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    print(f"run.sh on the three-class folder: {time.monotonic() - started:.0f} s")
    assert re.fullmatch(r"final val mIoU: \d+\.\d\d", result.stdout.strip().splitlines()[-1])

    # the resolved values: the class count from classes.txt, VOC's lists, no training ground truth
    record = json.loads((run_dir / "run.json").read_text())
    settings, paths = record["settings"], record["paths"]
    assert settings["NUM_CLASSES"] == {"value": "3", "from": f"class-name file {data / 'classes.txt'}"}
    assert settings["CUES"]["value"] == "generate" and settings["TRAIN_GT"]["value"] == "0"
    assert "for 0 of 12 training ids" in settings["TRAIN_GT"]["from"]
    assert paths["TRAIN_IDS"] == str(data / "ImageSets" / "Segmentation" / "train.txt")
    assert paths["VAL_IDS"] == str(data / "ImageSets" / "Segmentation" / "val.txt")
    assert paths["IMAGE_LABELS"] == str(data / "lists" / "train_image_labels.txt")
    assert paths["INPUT_LIST"] == "" and paths["DATA_MISSING"] == ""

    # the nets sized to three classes by dataset.edits
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    def net(name):
        return text_format.Parse((run_dir / "prototxt" / name).read_text(), caffe_pb2.NetParameter())

    for name in ("stage1_train.prototxt", "stage2_train.prototxt", "deploy.prototxt"):
        classifiers = [layer.convolution_param.num_output for layer in net(name).layer if layer.name.startswith("fc8-SEC_")]
        assert classifiers == [3, 3, 3, 3], name
    annotation = next(layer for layer in net("stage1_train.prototxt").layer if layer.name == "annotation")
    assert ast.literal_eval(annotation.python_param.param_str)["num_classes"] == 3
    assert [layer.inner_product_param.num_output for layer in net("cam_deploy.prototxt").layer
            if layer.name == "fc8_CAM"] == [2]

    # the training list numbers the ids in list order, LF; the cue file was made from the image labels
    listed = (run_dir / "lists" / "train_input_list.txt").read_text()
    assert listed == "".join(f"{name}.jpg {index}\n" for index, name in enumerate(train))
    cue_file = run_dir / "cues" / "localization_cues.pickle.gz"
    mapping = load_cues(cue_file)
    assert len(mapping) == 2 * len(train)
    for index, classes in enumerate(train.values()):
        assert set(mapping[f"{index}_labels"].tolist()) - {0} == set(classes)
        assert mapping[f"{index}_cues"][0].max() < 3 and mapping[f"{index}_cues"][1:].max() < 11
    assert np.load(run_dir / "cams" / f"{next(iter(train))}.npy").shape == (2, 11, 11)
    check = json.loads((run_dir / "data_check.json").read_text())
    assert check["ok"] and check["layout"]["train_gt"] is False and check["counts"]["images_checked"] == 16

    # val is scored over the three named classes; the training images have nothing to be scored against
    for name in ("eval_val_stage1.json", "eval_val_stage2.json"):
        evaluation = json.loads((run_dir / name).read_text())
        assert evaluation["num_classes"] == 3 and [row["name"] for row in evaluation["per_class"]] == CLASS_NAMES
    for name in ("eval_train_pseudo_labels.json", "seeds_cues.json", "seeds_grown.json"):
        assert not (run_dir / name).exists(), name
    assert "train pseudo labels mIoU    n/a" in result.stdout
    for folder, ids in (("val_stage2", val), ("pseudo_labels", list(train))):
        assert sorted(path.stem for path in (run_dir / folder).glob("*.png")) == sorted(ids), folder
    with Image.open(run_dir / "val_stage2" / f"{val[0]}.png") as prediction:
        assert prediction.size == (VAL_IMAGES[0][1], VAL_IMAGES[0][2])
    assert (run_dir / "panels_val.png").is_file() and (run_dir / "panels_train.png").is_file()


def test_training_masks_without_a_label_file_give_the_labels(tmp_path):
    """The project's lists/*_id.txt, training masks, no label file: IMAGE_LABELS_NAME= derives the labels
    (tools/make_image_labels.py) and TRAIN_GT resolves to 1."""
    data = tmp_path / "mine"
    train, _ = make_own_dataset(data, train_masks=True, voc_lists=False, label_file=False)
    run_dir = tmp_path / "run"
    done = run_sh(data, run_dir, "data", exp="custom-vgg16")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"[run] ERROR: IMAGE_LABELS_NAME=lists/train_image_labels.txt: no label file "
        f"{data / 'lists' / 'train_image_labels.txt'} (expected '<id> <class> ...' lines, docs/own-dataset.md; or "
        "IMAGE_LABELS_NAME= derives them from the training ground truth)")
    done = run_sh(data, run_dir, "data", exp="custom-vgg16", IMAGE_LABELS_NAME="")
    assert done.returncode == 0, done.stderr
    labels = read_image_labels(run_dir / "lists" / "image_labels.txt", 3)
    assert {name: tuple(classes.tolist()) for name, classes in labels.items()} == train
    settings = json.loads((run_dir / "run.json").read_text())["settings"]
    assert settings["TRAIN_GT"]["value"] == "1" and "for 12 of 12 training ids" in settings["TRAIN_GT"]["from"]
    assert json.loads((run_dir / "run.json").read_text())["paths"]["TRAIN_IDS"] == str(data / "lists" / "train_id.txt")
    assert read_label_png(data / "SegmentationClass" / f"{next(iter(train))}.png").max() <= 2


def test_an_incomplete_folder_is_one_line_naming_what_is_missing(tmp_path):
    data = tmp_path / "mine"
    make_own_dataset(data)
    for path in (data / "ImageSets" / "Segmentation").iterdir():
        path.unlink()
    done = run_sh(data, tmp_path / "run", "data", exp="custom-vgg16")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"[run] ERROR: the VOC layout in {data} is incomplete; missing: {data / 'lists' / 'train_id.txt'} or "
        f"{data / 'ImageSets' / 'Segmentation' / 'train.txt'}, {data / 'lists' / 'val_id.txt'} or "
        f"{data / 'ImageSets' / 'Segmentation' / 'val.txt'} (see README)")
    (data / "classes.txt").unlink()
    done = run_sh(data, tmp_path / "run", "data", exp="custom-vgg16")
    assert done.returncode == 1
    assert done.stderr == (f"resolve_settings.py: error: {data / 'classes.txt'}: class-name file missing (NUM_CLASSES "
                           "is empty: it is the number of names in this file, one per line, background first)\n")


def test_dataset_edits_size_the_voc12_nets_to_the_class_count(tmp_path):
    """tools/render_experiment.py with the values run.sh offers through --set-if-used: unused by the
    VOC12 template alone, the class count of the nets with dataset.edits."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    render = load_tool("render_experiment")
    template = REPO_ROOT / "experiment" / "voc12-vgg16"
    needed = {name for path in template.glob("*.prototxt") for name in re.findall(r"\$\{(\w+)\}", path.read_text())}
    values = {name: f"/{name.lower()}" for name in needed}
    offered = {"NUM_CLASSES": "5", "NUM_FOREGROUND_CLASSES": "4", "CUE_SIZE": "41", "CUE_FILE_SIZE": "41"}
    render.render_experiment(template, tmp_path / "plain", values, values_if_used=offered)
    plain = text_format.Parse((tmp_path / "plain" / "deploy.prototxt").read_text(), caffe_pb2.NetParameter())
    assert {layer.convolution_param.num_output for layer in plain.layer if layer.name.startswith("fc8-SEC_")} == {21}
    edits = [str(REPO_ROOT / "experiment" / "custom-vgg16" / "dataset.edits")]
    render.render_experiment(template, tmp_path / "five", values, edit_files=edits, values_if_used=offered)
    five = text_format.Parse((tmp_path / "five" / "deploy.prototxt").read_text(), caffe_pb2.NetParameter())
    assert {layer.convolution_param.num_output for layer in five.layer if layer.name.startswith("fc8-SEC_")} == {5}
    cam = text_format.Parse((tmp_path / "five" / "cam_train.prototxt").read_text(), caffe_pb2.NetParameter())
    labels = next(layer for layer in cam.layer if layer.name == "image_labels")
    assert ast.literal_eval(labels.python_param.param_str)["num_classes"] == 5
    assert [layer.inner_product_param.num_output for layer in cam.layer if layer.name == "fc8_CAM"] == [4]
