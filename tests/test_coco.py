"""MS-COCO: the 81-class order, label maps from instances (dsrg.coco), the converter on a COCO-format
fixture (tools/convert_coco.py: polygons, compressed and uncompressed RLE, crowd, overlaps, an image
without annotations), its bad-input errors, the rendered coco-vgg16 nets, and a smoke run of
`EXP=coco-vgg16 bash run.sh` on a tiny synthetic COCO-format data set."""
import ast
import json
import os
import re
import subprocess
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caffe_helpers import REPO_ROOT, load_tool
from dsrg import coco, fileio
from dsrg.cues import load_cues, save_cues
from dsrg.fileio import read_label_png
from dsrg.imagelabels import read_image_labels
from dsrg.seeds import sample_labels_on_grid

pycocotools_mask = pytest.importorskip("pycocotools.mask")
convert_coco = load_tool("convert_coco")

# The 80 categories in ascending COCO id, typed from the official instances JSON's "categories"
# (spaces in names written as underscores).
EXPECTED_NAMES = """person bicycle car motorcycle airplane bus train truck boat
traffic_light fire_hydrant stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe
backpack umbrella handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard
surfboard tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot
hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard cell_phone
microwave oven toaster sink refrigerator book clock vase scissors teddy_bear hair_drier toothbrush""".split()
MISSING_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def categories_json():
    return [{"id": category_id, "name": name, "supercategory": "x"} for category_id, name in coco.COCO_CATEGORIES]


def rectangle(x0, y0, x1, y1):
    """A COCO polygon of the rectangle of pixels rows y0..y1-1, columns x0..x1-1 (as pycocotools rasterises it)."""
    return [float(x0), float(y0), float(x1), float(y0), float(x1), float(y1), float(x0), float(y1)]


def compressed_rle(mask):
    rle = pycocotools_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def write_jpeg(path, width, height, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path, quality=95)


# ---------------------------------------------------------------- classes


def test_the_81_classes_are_background_and_the_80_coco_categories_in_ascending_id():
    assert coco.NUM_CLASSES == 81
    assert coco.CLASS_NAMES[0] == "background"
    assert [name.replace(" ", "_") for name in coco.CLASS_NAMES[1:]] == EXPECTED_NAMES
    ids = [category_id for category_id, _ in coco.COCO_CATEGORIES]
    assert ids == sorted(set(range(1, 91)) - MISSING_IDS)
    assert coco.CLASS_OF_CATEGORY[1] == 1 and coco.CLASS_OF_CATEGORY[13] == 12  # stop sign after the gap at 12
    assert coco.CLASS_OF_CATEGORY[67] == 61 and coco.CLASS_OF_CATEGORY[90] == 80
    assert coco.class_names_text().splitlines() == list(coco.CLASS_NAMES)


# ---------------------------------------------------------------- label maps (numpy)


def box_mask(height, width, rows, cols):
    mask = np.zeros((height, width), dtype=bool)
    mask[rows, cols] = True
    return mask


def test_smaller_on_top_and_annotation_order_crowd_under_regular_instances():
    big = coco.Instance(1, box_mask(4, 5, slice(0, 4), slice(0, 4)), False, 7)
    small = coco.Instance(18, box_mask(4, 5, slice(1, 3), slice(1, 3)), False, 3)
    crowd = coco.Instance(3, box_mask(4, 5, slice(0, 4), slice(3, 5)), True, 9)
    instances = [small, big, crowd]  # the small one first in the JSON

    expected = np.zeros((4, 5), dtype=np.uint8)
    expected[:, 4] = 255          # crowd where no regular instance is
    expected[0:4, 0:4] = 1        # the big instance (over the crowd in column 3)
    expected[1:3, 1:3] = 18       # the smaller one on top
    np.testing.assert_array_equal(coco.compose_label_map(4, 5, instances), expected)

    in_order = expected.copy()
    in_order[1:3, 1:3] = 1        # the later annotation (big) on top
    np.testing.assert_array_equal(coco.compose_label_map(4, 5, instances, "annotation-order"), in_order)


def test_equal_areas_put_the_later_annotation_on_top_and_masks_must_fit():
    first = coco.Instance(5, box_mask(2, 2, slice(0, 2), 0), False, 1)
    second = coco.Instance(6, box_mask(2, 2, slice(0, 1), slice(0, 2)), False, 2)
    label = coco.compose_label_map(2, 2, [first, second])
    np.testing.assert_array_equal(label, [[6, 6], [5, 0]])
    with pytest.raises(coco.CocoFormatError, match="annotation 4: mask of shape"):
        coco.compose_label_map(3, 2, [coco.Instance(5, np.ones((2, 2), bool), False, 4)])
    with pytest.raises(ValueError, match="unknown overlap rule"):
        coco.paint_order([first], "largest-on-top")


def test_index_annotations_lists_every_unknown_category_id_and_bad_names():
    dataset = {"categories": categories_json(), "images": [{"id": 1, "file_name": "a.jpg", "height": 2, "width": 2}],
               "annotations": [{"id": 10, "image_id": 1, "category_id": 12, "segmentation": []},
                               {"id": 11, "image_id": 1, "category_id": 91, "segmentation": []},
                               {"id": 12, "image_id": 1, "category_id": 12, "segmentation": []}]}
    with pytest.raises(coco.CocoFormatError) as error:
        coco.index_annotations(dataset, "x.json")
    message = str(error.value)
    assert "x.json: unknown category ids 12 (2 annotations, e.g. annotation 10 of image 1)" in message
    assert "91 (1 annotation, e.g. annotation 11 of image 1)" in message
    renamed = dict(dataset, annotations=[], categories=[{"id": 1, "name": "people"}])
    with pytest.raises(coco.CocoFormatError, match="id 1 is named 'people', COCO's 1 is 'person'"):
        coco.index_annotations(renamed, "x.json")
    orphan = dict(dataset, annotations=[{"id": 5, "image_id": 2, "category_id": 1, "segmentation": []}])
    with pytest.raises(coco.CocoFormatError, match="annotation 5 belongs to image id 2"):
        coco.index_annotations(orphan, "x.json")


# ---------------------------------------------------------------- the converter on a fixture


def fixture_dataset(tmp_path):
    """Three small images and their instances JSON; returns (json path, image dir, expected label maps)."""
    images = tmp_path / "images"
    images.mkdir(parents=True)
    for name, (width, height) in {"a.jpg": (8, 6), "b.jpg": (5, 5), "c.jpg": (4, 4)}.items():
        write_jpeg(images / name, width, height)
    toothbrush_mask = box_mask(6, 8, slice(4, 6), slice(5, 8))
    annotations = [
        # image a: a dog on a person (the dog listed first), a crowd of cars in column 7 (uncompressed
        # RLE, column-major counts: 42 zeros, 6 ones), a toothbrush over the crowd (compressed RLE)
        {"id": 1, "image_id": 101, "category_id": 18, "segmentation": [rectangle(2, 1, 4, 3)], "iscrowd": 0},
        {"id": 2, "image_id": 101, "category_id": 1, "segmentation": [rectangle(0, 0, 6, 4)], "iscrowd": 0},
        {"id": 3, "image_id": 101, "category_id": 3, "segmentation": {"size": [6, 8], "counts": [42, 6]},
         "iscrowd": 1},
        {"id": 4, "image_id": 101, "category_id": 90, "segmentation": compressed_rle(toothbrush_mask), "iscrowd": 0},
        # image c: one stop sign in two parts, plus a degenerate two-point polygon (no area)
        {"id": 5, "image_id": 303, "category_id": 13,
         "segmentation": [rectangle(0, 0, 2, 2), rectangle(2, 2, 4, 4), [0.0, 3.0, 1.0, 3.0]], "iscrowd": 0},
    ]
    dataset = {"info": {}, "licenses": [], "categories": categories_json(), "annotations": annotations,
               "images": [{"id": 101, "file_name": "a.jpg", "height": 6, "width": 8},
                          {"id": 202, "file_name": "b.jpg", "height": 5, "width": 5},
                          {"id": 303, "file_name": "c.jpg", "height": 4, "width": 4}]}
    path = tmp_path / "instances_mini2014.json"
    path.write_text(json.dumps(dataset))

    a = np.zeros((6, 8), dtype=np.uint8)
    a[:, 7] = 255
    a[0:4, 0:6] = 1
    a[1:3, 2:4] = 17              # dog: COCO category 18, class 17 (after the gap at 12)
    a[4:6, 5:8] = 80
    c = np.zeros((4, 4), dtype=np.uint8)
    c[0:2, 0:2] = 12
    c[2:4, 2:4] = 12
    return path, images, {"a": a, "b": np.zeros((5, 5), dtype=np.uint8), "c": c}


def test_converter_writes_the_expected_label_maps_lists_and_labels(tmp_path):
    annotations, images, expected = fixture_dataset(tmp_path)
    out = tmp_path / "coco"
    counts = convert_coco.main(["--annotations", str(annotations), "--images", str(images), "--out", str(out),
                                "--no-progress"])
    assert (counts["images"], counts["converted"], counts["annotations"], counts["crowd_annotations"],
            counts["images_without_annotations"]) == (3, 3, 5, 1, 1)
    for name, label in expected.items():
        np.testing.assert_array_equal(read_label_png(out / "SegmentationClass" / f"{name}.png"), label)
        link = out / "JPEGImages" / f"{name}.jpg"
        assert link.is_symlink() and link.resolve() == (images / f"{name}.jpg").resolve()
    lists = out / "lists"
    assert (lists / "mini2014_id.txt").read_text() == "a\nb\nc\n"
    assert (lists / "mini2014_input_list.txt").read_text() == "a.jpg 101\nb.jpg 202\nc.jpg 303\n"
    assert (lists / "mini2014_image_labels.txt").read_text() == "a 1 3 17 80\nb\nc 12\n"
    parsed = read_image_labels(lists / "mini2014_image_labels.txt", coco.NUM_CLASSES)
    assert list(parsed["a"]) == [1, 3, 17, 80] and list(parsed["b"]) == []
    assert (out / "classes.txt").read_text().splitlines() == list(coco.CLASS_NAMES)
    record = json.loads((lists / "mini2014_conversion.json").read_text())
    assert record["complete"] and record["settings"]["overlap"] == "smaller-on-top"
    assert not [path for path in out.rglob("*.tmp")]

    again = convert_coco.main(["--annotations", str(annotations), "--images", str(images), "--out", str(out),
                               "--no-progress"])
    assert (again["converted"], again["skipped"]) == (0, 3)
    with pytest.raises(coco.CocoFormatError, match="other settings \\(overlap differ\\)"):
        convert_coco.main(["--annotations", str(annotations), "--images", str(images), "--out", str(out),
                           "--overlap", "annotation-order", "--no-progress"])

    ordered = tmp_path / "ordered"
    convert_coco.main(["--annotations", str(annotations), "--images", str(images), "--out", str(ordered),
                       "--overlap", "annotation-order", "--copy", "--no-progress"])
    in_order = expected["a"].copy()
    in_order[1:3, 2:4] = 1
    np.testing.assert_array_equal(read_label_png(ordered / "SegmentationClass" / "a.png"), in_order)
    assert not (ordered / "JPEGImages" / "a.jpg").is_symlink()
    umask = fileio.current_umask()
    for made in ("JPEGImages/a.jpg", "SegmentationClass/a.png"):
        assert stat.S_IMODE((ordered / made).stat().st_mode) == 0o666 & ~umask, made

    first_two = tmp_path / "first_two"
    convert_coco.main(["--annotations", str(annotations), "--images", str(images), "--out", str(first_two),
                       "--split", "mini", "--limit", "2", "--no-progress"])
    assert (first_two / "lists" / "mini_id.txt").read_text() == "a\nb\n"
    assert sorted(path.name for path in (first_two / "SegmentationClass").iterdir()) == ["a.png", "b.png"]


def spoil(annotations, change):
    dataset = json.loads(annotations.read_text())
    change(dataset)
    annotations.write_text(json.dumps(dataset))


def run_tool(*args):
    return subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "python"), str(REPO_ROOT / "tools" / "convert_coco.py"),
                           *args], capture_output=True, text=True, timeout=120)


def test_unknown_category_and_missing_image_are_named_and_nothing_is_written(tmp_path):
    annotations, images, _ = fixture_dataset(tmp_path)
    spoil(annotations, lambda dataset: dataset["annotations"][3].update(category_id=83))
    out = tmp_path / "coco"
    result = run_tool("--annotations", str(annotations), "--images", str(images), "--out", str(out))
    assert result.returncode != 0
    assert "unknown category id 83 (1 annotation, e.g. annotation 4 of image 101)" in result.stderr
    assert not out.exists()

    annotations, images, _ = fixture_dataset(tmp_path / "second")
    (images / "c.jpg").unlink()
    result = run_tool("--annotations", str(annotations), "--images", str(images), "--out", str(out))
    assert result.returncode != 0
    assert f"1 of its 3 images are missing from {images}: c.jpg" in result.stderr
    assert not out.exists()

    write_jpeg(images / "c.jpg", 5, 4)
    with pytest.raises(coco.CocoFormatError, match=r"c.jpg \(5×4, the JSON says 4×4\)"):
        convert_coco.main(["--annotations", str(annotations), "--images", str(images), "--out", str(out),
                           "--no-progress"])
    assert not out.exists()


# ---------------------------------------------------------------- the experiment


def test_coco_vgg16_renders_81_classes_from_the_voc12_template(tmp_path):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    render = load_tool("render_experiment")
    edits = [str(REPO_ROOT / "experiment" / "coco-vgg16" / "coco.edits")]
    values = {"IMAGE_DIR": "/images", "INPUT_LIST": "/list.txt", "CUES": "/cues.pickle", "STAGE2_ROOT": "/",
              "STAGE2_LIST": "/stage2.txt", "CAM_LIST": "/cam.txt", "IMAGE_LABELS": "/labels.txt"}
    template = REPO_ROOT / "experiment" / "voc12-vgg16"
    needed = {name for path in template.glob("*.prototxt") for name in re.findall(r"\$\{(\w+)\}", path.read_text())}
    render.render_experiment(template, tmp_path, {name: values.get(name, f"/{name.lower()}") for name in needed}, False, edits)
    for name in ("stage1_train.prototxt", "stage2_train.prototxt", "deploy.prototxt"):
        net = text_format.Parse((tmp_path / name).read_text(), caffe_pb2.NetParameter())
        classifiers = [layer for layer in net.layer if layer.name.startswith("fc8-SEC_")]
        assert len(classifiers) == 4 and {layer.convolution_param.num_output for layer in classifiers} == {81}
    stage1 = text_format.Parse((tmp_path / "stage1_train.prototxt").read_text(), caffe_pb2.NetParameter())
    annotation = next(layer for layer in stage1.layer if layer.name == "annotation")
    assert ast.literal_eval(annotation.python_param.param_str) == {"cues": "/cues.pickle", "mirror": True,
                                                                  "num_classes": 81}


# ---------------------------------------------------------------- smoke run through run.sh

SMOKE_CLASSES = {1: (200, 60, 60), 18: (60, 200, 60), 3: (60, 60, 200), 90: (220, 220, 40)}
SMOKE_GRID = 11
SMOKE_ENV = {"EXP": "coco-vgg16", "EDITS": "coco.edits smoke.edits", "CUE_SIZE": "11", "CUE_FILE_SIZE": "11",
             "STAGE1_SCALES": "81", "PSEUDO_SCALES": "81", "STAGE2_SCALE_MODE": "warp", "STAGE2_SCALES": "81",
             "STAGE2_WARP": "81", "STAGE1_ITERS": "2", "STAGE2_ITERS": "2", "CAM_ITERS": "2", "LOG_EVERY": "1",
             "SEEDS_LIMIT": "6", "INIT_WEIGHTS_REQUIRED": "0", "DSRG_SKIP_SETUP": "1", "GPU": "",
             "GLOG_minloglevel": "2"}


def smoke_split(root, split, count, seed):
    """`count` synthetic 96×128 photos with two or three coloured rectangles each, and their instances JSON."""
    rng = np.random.default_rng(seed)
    folder = root / split
    folder.mkdir(parents=True)
    images, annotations = [], []
    for number in range(count):
        image_id = 1000 * seed + number + 1
        pixels = rng.integers(90, 150, (96, 128, 3)).astype(np.uint8)
        for slot, category_id in enumerate(rng.choice(sorted(SMOKE_CLASSES), size=2 + number % 2, replace=False)):
            x0, y0 = 8 + 40 * slot + int(rng.integers(0, 6)), 10 + int(rng.integers(0, 20))
            x1, y1 = x0 + 30, y0 + 40 + int(rng.integers(0, 20))
            pixels[y0:y1, x0:x1] = SMOKE_CLASSES[int(category_id)]
            annotations.append({"id": len(annotations) + 1 + 100 * seed, "image_id": image_id,
                                "category_id": int(category_id), "segmentation": [rectangle(x0, y0, x1, y1)],
                                "iscrowd": int(number == 0 and slot == 0)})
        name = f"COCO_{split}_{image_id:012d}.jpg"
        Image.fromarray(pixels).save(folder / name, quality=95)
        images.append({"id": image_id, "file_name": name, "height": 96, "width": 128})
    path = root / f"instances_{split}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories_json()}))
    return path, folder


def smoke_cues(data, split):
    """Cues in the official format on the smoke nets' 11×11 grid from the converted ground truth (every
    object cell, every third background cell), keyed by COCO image id."""
    mapping = {}
    labels = read_image_labels(data / "lists" / f"{split}_image_labels.txt", coco.NUM_CLASSES)
    for line in (data / "lists" / f"{split}_input_list.txt").read_text().splitlines():
        file_name, index = line.split()
        grid = sample_labels_on_grid(read_label_png(data / "SegmentationClass" / file_name.replace(".jpg", ".png")),
                                     SMOKE_GRID, SMOKE_GRID)
        every_third = np.arange(SMOKE_GRID ** 2).reshape(SMOKE_GRID, SMOKE_GRID) % 3 == 0
        rows, cols = np.nonzero(((grid != 0) & (grid != 255)) | ((grid == 0) & every_third))
        mapping[f"{index}_labels"] = np.asarray(labels[Path(file_name).stem], dtype=np.int64)
        mapping[f"{index}_cues"] = np.stack([grid[rows, cols], rows, cols]).astype(np.int64)
    save_cues(data / "localization_cues-coco.pickle", mapping)


def test_coco_vgg16_smoke_run(tmp_path):
    raw = tmp_path / "raw"
    data = tmp_path / "coco"
    for split, count, seed in (("train2014", 6, 1), ("val2014", 3, 2)):
        annotations, folder = smoke_split(raw, split, count, seed)
        convert_coco.main(["--annotations", str(annotations), "--images", str(folder), "--out", str(data),
                           "--no-progress"])
    smoke_cues(data, "train2014")
    run_dir = tmp_path / "run"
    env = dict(os.environ, PASCAL_DIR=str(data), RUN_DIR=str(run_dir), **SMOKE_ENV)
    for name in ("CUES", "INIT_WEIGHTS", "FUSE", "PSEUDO_RESTRICT"):
        env.pop(name, None)
    result = subprocess.run(["bash", str(REPO_ROOT / "run.sh")], env=env, cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"run.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert re.fullmatch(r"final val mIoU: \d+\.\d\d", result.stdout.strip().splitlines()[-1])

    val_ids = (data / "lists" / "val2014_id.txt").read_text().split()
    for folder in ("val_stage1", "val_stage2"):
        assert sorted(path.stem for path in (run_dir / folder).glob("*.png")) == sorted(val_ids)
    final = json.loads((run_dir / "eval_val_stage2.json").read_text())
    assert final["num_classes"] == 81 and len(final["per_class"]) == 81
    assert [row["name"] for row in final["per_class"]] == list(coco.CLASS_NAMES)
    # the crowd rectangle of the first training image is ignored, not background
    train_ids = (data / "lists" / "train2014_id.txt").read_text().split()
    assert np.count_nonzero(read_label_png(data / "SegmentationClass" / f"{train_ids[0]}.png") == 255) > 0
    assert (run_dir / "panels_val.png").is_file() and (run_dir / "panels_train.png").is_file()

    # CUES=generate: the CAM net with its 80-way classifier makes an 81-class cue file from the labels
    generate = dict(env, CUES="generate")
    result = subprocess.run(["bash", str(REPO_ROOT / "run.sh"), "data", "cues"], env=generate, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"run.sh data cues failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    generated = load_cues(run_dir / "cues" / "localization_cues.pickle.gz")
    # the converter's label file (IMAGE_LABELS_NAME), crowd-only classes included, not one derived from the PNGs
    assert not (run_dir / "lists" / "image_labels.txt").exists()
    labels = read_image_labels(data / "lists" / "train2014_image_labels.txt", coco.NUM_CLASSES)
    for line in (data / "lists" / "train2014_input_list.txt").read_text().splitlines():
        file_name, index = line.split()
        listed = generated[f"{index}_labels"]
        assert sorted(set(listed) - {0}) == list(labels[Path(file_name).stem])
        assert generated[f"{index}_cues"].shape[0] == 3 and generated[f"{index}_cues"][0].max() < coco.NUM_CLASSES
