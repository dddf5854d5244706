"""tools/check_data.py and dsrg.datacheck on a small generated VOC layout (good and spoiled), and the real
shared data (skipped when ../shared is absent); the list readers themselves: tests/test_lists.py."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caffe_helpers import SHARED_VOC12
from dsrg.cues import save_cues
from dsrg.datacheck import DataLayout, check_dataset, fingerprint
from dsrg.fileio import atomic_save_label_png
from dsrg.lists import read_image_ids
from caffe_helpers import load_tool

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["2007_000001", "2007_000002", "2007_000003", "2007_000004"]
VAL = ["2008_000001", "2008_000002"]


def make_layout(root):
    """A 4-train / 2-val VOC layout with CRLF training ids, 21 classes, 41×41 cues; returns the CLI args."""
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "lists").mkdir()
    for number, name in enumerate(TRAIN + VAL):
        height, width = 24 + number, 32
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{name}.jpg", quality=90)
        labels = np.zeros((height, width), dtype=np.uint8)
        labels[4:12, 4:12] = 1 + number
        labels[0] = 255
        atomic_save_label_png(root / "SegmentationClassAug" / f"{name}.png", labels)
    # The input list holds one image more than the training ids, as the VOC one holds train_aug.
    (root / "lists" / "input_list.txt").write_text(
        "".join(f"{name}.jpg {index}\n" for index, name in enumerate(TRAIN + ["2007_000099"])))
    (root / "lists" / "train_ids.txt").write_bytes("".join(f"{name}\r\n" for name in TRAIN).encode())
    (root / "lists" / "val_ids.txt").write_text("".join(f"{name}\n" for name in VAL))
    cues = {}
    for index in range(len(TRAIN) + 1):
        cues[f"{index}_labels"] = np.array([1 + index])
        cues[f"{index}_cues"] = np.array([[0, 1 + index], [0, 20], [0, 20]])
    save_cues(root / "cues.pickle", cues)
    return ["--images", str(root / "JPEGImages"), "--gt", str(root / "SegmentationClassAug"),
            "--input-list", str(root / "lists" / "input_list.txt"), "--train-ids", str(root / "lists" / "train_ids.txt"),
            "--val-ids", str(root / "lists" / "val_ids.txt"), "--cues", str(root / "cues.pickle"),
            "--num-classes", "21", "--no-progress"]


def test_a_good_layout_passes_and_a_rerun_skips_until_an_input_changes(tmp_path, capsys):
    check_data = load_tool("check_data")
    args = make_layout(tmp_path / "voc") + ["--out", str(tmp_path / "report.json")]
    assert check_data.main(args) == 0
    output = capsys.readouterr().out
    assert "check_data.py: note: CRLF line endings in train_ids.txt (read correctly)" in output
    assert output.strip().splitlines()[-1].startswith(
        "check_data.py: OK: 6 images decode completely with matching ground truth (4 training ids, 2 val ids); "
        "every training id is in the input list (5 entries) with cues in the cue file (5 images)")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and report["problems"] == [] and report["counts"]["images_checked"] == 6

    assert check_data.main(args) == 0
    assert "records a pass on the same inputs" in capsys.readouterr().out
    image = tmp_path / "voc" / "JPEGImages" / f"{VAL[0]}.jpg"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10 ** 9))
    assert check_data.main(args) == 0
    assert "records a pass" not in capsys.readouterr().out
    assert check_data.main(args + ["--force"]) == 0
    assert "records a pass" not in capsys.readouterr().out


def spoil_layout(root):
    """Spoil the layout in nine ways; returns {file name: expected problem text}."""
    images, gt = root / "JPEGImages", root / "SegmentationClassAug"
    data = (images / f"{TRAIN[0]}.jpg").read_bytes()
    (images / f"{TRAIN[0]}.jpg").write_bytes(data[:len(data) // 2])
    (images / f"{TRAIN[1]}.jpg").write_bytes(b"")
    atomic_save_label_png(gt / f"{TRAIN[2]}.png", np.zeros((5, 5), dtype=np.uint8))
    atomic_save_label_png(gt / f"{TRAIN[3]}.png", np.full((27, 32), 30, dtype=np.uint8))
    (gt / f"{VAL[0]}.png").unlink()
    (images / f"{VAL[1]}.jpg").write_bytes(b"not a jpeg at all")
    lists = root / "lists"
    (lists / "val_ids.txt").write_bytes(b"\xef\xbb\xbf" + (lists / "val_ids.txt").read_bytes())
    (lists / "train_ids.txt").write_text("\n".join(TRAIN + ["2007_000077"]) + "\n")
    (lists / "input_list.txt").write_text((lists / "input_list.txt").read_text() + "2007_000088.jpg 7\n"
                                          + f"{TRAIN[0]}.jpg 3\n")
    return {
        f"{TRAIN[0]}.jpg": "expected an image that decodes completely, got OSError: image file is truncated",
        f"{TRAIN[1]}.jpg": "empty image file (0 bytes)",
        f"{TRAIN[2]}.png": "label map is 5×5 (W×H) but its image is 32×26",
        f"{TRAIN[3]}.png": "label values [30] (864 pixels) outside the classes 0..20 and 255 (ignore)",
        f"{VAL[0]}.png": "ground-truth label map missing",
        f"{VAL[1]}.jpg": "expected an image that decodes completely, got UnidentifiedImageError",
        "val_ids.txt": "val ids starts with a UTF-8 byte-order mark",
        "input_list.txt": "training id 2007_000077 (from train_ids.txt) is not listed",
    }


def test_a_spoiled_layout_lists_every_problem_by_file_and_exits_1(tmp_path, capsys):
    check_data = load_tool("check_data")
    args = make_layout(tmp_path / "voc") + ["--out", str(tmp_path / "report.json")]
    expected = spoil_layout(tmp_path / "voc")
    assert check_data.main(args) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    report = json.loads((tmp_path / "report.json").read_text())
    problems = [(Path(item["file"]).name, item["problem"]) for item in report["problems"]]
    for name, text in expected.items():
        assert any(found == name and problem.startswith(text) for found, problem in problems), (name, problems)
    assert ("input_list.txt", f"image {TRAIN[0]} is listed twice (cue indices 0 and 3)") in problems
    assert ("input_list.txt", f"cue index 3 is given to both {TRAIN[3]} and {TRAIN[0]}") not in problems
    cue_problems = [problem for name, problem in problems if name == "cues.pickle"]
    assert cue_problems == []            # index 7 (2007_000088) is not a training id: not needed
    assert len(problems) == report["counts"]["problems"] == 11   # 2007_000077 also lacks its files
    assert errors[-1].startswith("check_data.py: 11 problems in the data set (7 images checked, ")
    assert errors[-1].endswith(f"all of them in {tmp_path / 'report.json'}")
    assert any(line.startswith(str(tmp_path / "voc" / "JPEGImages" / f"{TRAIN[0]}.jpg") + ": ") for line in errors)
    # A failed report is never a reason to skip; --show limits the lines, not the report.
    assert check_data.main(args + ["--show", "2"]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and errors[2] == "... and 9 more"


def test_cue_entries_of_training_images_are_checked(tmp_path):
    root = tmp_path / "voc"
    make_layout(root)
    save_cues(root / "cues.pickle", {"0_labels": np.array([1]), "0_cues": np.array([[1], [3], [50]]),
                                     "1_labels": np.array([25]), "1_cues": np.array([[0], [0], [0]]),
                                     "2_labels": np.array([1]), "2_cues": np.array([[0], [0], [0]])})
    layout = DataLayout(root / "JPEGImages", root / "SegmentationClassAug", root / "lists" / "input_list.txt",
                        root / "lists" / "train_ids.txt", root / "lists" / "val_ids.txt", root / "cues.pickle", 21)
    report = check_dataset(layout)
    texts = [item["problem"] for item in report["problems"]]
    assert len(texts) == 3 and not report["ok"]
    assert texts[0].startswith(f"training image {TRAIN[0]} (cue index 0, 41×41 grid): cue col out of range: "
                               "expected 0..40, got [50]")
    assert texts[1].startswith(f"training image {TRAIN[1]} (cue index 1, 41×41 grid): ") and "[25]" in texts[1]
    assert texts[2].startswith(f"training image {TRAIN[3]} (cue index 3, 41×41 grid): ") and "no cues" in texts[2]
    assert "'3_labels'" in texts[2]


def test_training_images_with_image_labels_only_need_no_ground_truth(tmp_path, capsys):
    """--no-train-gt (run.sh with TRAIN_GT=0): the training images are decoded, only the val images are
    compared with their ground truth, and a missing val map is still a problem."""
    check_data = load_tool("check_data")
    args = make_layout(tmp_path / "voc")
    gt = tmp_path / "voc" / "SegmentationClassAug"
    for name in TRAIN:
        (gt / f"{name}.png").unlink()
    assert check_data.main(args) == 1
    capsys.readouterr()
    assert check_data.main(args + ["--no-train-gt", "--out", str(tmp_path / "report.json")]) == 0
    assert ("check_data.py: OK: 6 images decode completely, the val images with matching ground truth (4 training ids, "
            "2 val ids)") in capsys.readouterr().out
    assert json.loads((tmp_path / "report.json").read_text())["layout"]["train_gt"] is False
    (gt / f"{VAL[0]}.png").unlink()
    layout = DataLayout(tmp_path / "voc" / "JPEGImages", gt, tmp_path / "voc" / "lists" / "input_list.txt",
                        tmp_path / "voc" / "lists" / "train_ids.txt", tmp_path / "voc" / "lists" / "val_ids.txt",
                        tmp_path / "voc" / "cues.pickle", 21, train_gt=False)
    assert [(Path(item["file"]).name, item["problem"]) for item in check_dataset(layout)["problems"]] == [
        (f"{VAL[0]}.png", "ground-truth label map missing")]


def test_missing_folders_and_lists_are_reported_once(tmp_path):
    layout = DataLayout(tmp_path / "JPEGImages", tmp_path / "gt", tmp_path / "input_list.txt", tmp_path / "train.txt",
                        tmp_path / "val.txt", tmp_path / "cues.pickle", 21)
    report = check_dataset(layout)
    assert [Path(item["file"]).name for item in report["problems"]] == [
        "JPEGImages", "gt", "input_list.txt", "train.txt", "val.txt"]
    assert report["counts"]["images_checked"] == 0
    assert len(fingerprint(layout)) == 64


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(tmp_path, capsys):
    check_data = load_tool("check_data")
    args = [arg for arg in make_layout(tmp_path / "voc") if arg != "--no-progress"]
    assert check_data.main(args) == 0
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[0].startswith("check images: 1/6 img (16%), ") and errors[-1].startswith("check images: 6/6 img")


@pytest.mark.skipif(not SHARED_VOC12.is_dir(), reason="shared VOC12 data (../shared) not available")
def test_real_voc12_photos_pass(tmp_path, capsys):
    """The first 150 training photos and 50 val photos of the shared data, with the real input list,
    the SEC cue file and the CRLF train_aug_id.txt order."""
    lists = SHARED_VOC12 / "lists"
    train = read_image_ids(lists / "train_aug_photos_id.txt")[:150]
    val = read_image_ids(lists / "val_photos_id.txt")[:50]
    (tmp_path / "train.txt").write_bytes("".join(f"{name}\r\n" for name in train).encode())
    (tmp_path / "val.txt").write_text("".join(f"{name}\n" for name in val))
    assert b"\r\n" in (lists / "train_aug_id.txt").read_bytes()[:100]
    assert len(read_image_ids(lists / "train_aug_id.txt")) == 10582
    check_data = load_tool("check_data")
    code = check_data.main(["--images", str(SHARED_VOC12 / "JPEGImages"), "--gt", str(SHARED_VOC12 / "SegmentationClassAug"),
                            "--input-list", str(lists / "input_list.txt"), "--train-ids", str(tmp_path / "train.txt"),
                            "--val-ids", str(tmp_path / "val.txt"), "--cues",
                            str(SHARED_VOC12 / "localization_cues-sec.pickle.gz"), "--no-progress"])
    output = capsys.readouterr()
    assert code == 0, output.err[-3000:]
    assert "check_data.py: OK: 200 images" in output.out and "(10582 images)" in output.out


def test_duplicate_ids_and_ids_in_both_splits_are_problems(tmp_path):
    root = tmp_path / "voc"
    make_layout(root)
    (root / "lists" / "train_ids.txt").write_text("".join(f"{name}\n" for name in TRAIN + [TRAIN[2]]))
    (root / "lists" / "val_ids.txt").write_text("".join(f"{name}\n" for name in VAL + [TRAIN[1]]))
    layout = DataLayout(root / "JPEGImages", root / "SegmentationClassAug", root / "lists" / "input_list.txt",
                        root / "lists" / "train_ids.txt", root / "lists" / "val_ids.txt", root / "cues.pickle", 21)
    problems = [(Path(item["file"]).name, item["problem"]) for item in check_dataset(layout)["problems"]]
    assert problems == [("train_ids.txt", f"cannot read the training ids: {root / 'lists' / 'train_ids.txt'}: image "
                                          f"id {TRAIN[2]} is listed twice (lines 3 and 5); each image must be listed "
                                          "once")]
    (root / "lists" / "train_ids.txt").write_text("".join(f"{name}\n" for name in TRAIN))
    problems = [(Path(item["file"]).name, item["problem"]) for item in check_dataset(layout)["problems"]]
    assert problems == [("val_ids.txt", f"1 val id(s) are also training ids (from train_ids.txt): {TRAIN[1]}")]


def run_data_step(root, run_dir):
    """`EXP=voc12-vgg16 bash run.sh data` on the layout under `root` (the official file names)."""
    env = dict(os.environ, EXP="voc12-vgg16", PASCAL_DIR=str(root), RUN_DIR=str(run_dir),
               INIT_WEIGHTS=str(root / "init.caffemodel"), DSRG_SKIP_SETUP="1")
    return subprocess.run(["bash", str(REPO / "run.sh"), "data"], env=env, capture_output=True, text=True,
                          timeout=120)


def test_run_sh_data_counts_ids_as_the_tools_read_them(tmp_path):
    root = tmp_path / "voc"
    make_layout(root)
    (root / "init.caffemodel").write_bytes(b"")
    (root / "cues.pickle").rename(root / "localization_cues.pickle")
    (root / "lists" / "train_ids.txt").rename(root / "lists" / "train_aug_id.txt")
    (root / "lists" / "val_id.txt").write_text("".join(f"{name}\n\n" for name in VAL))
    (root / "lists" / "val_ids.txt").unlink()
    done = run_data_step(root, tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert f"VOC layout OK: {len(TRAIN)} training images with cues" in done.stdout + done.stderr
    assert f"{len(VAL)} val ids" in done.stdout + done.stderr
    (root / "lists" / "val_id.txt").write_text("".join(f"{name}\n" for name in VAL + [VAL[0]]))
    done = run_data_step(root, tmp_path / "run")
    assert done.returncode != 0
    assert f"val_id.txt: image id {VAL[0]} is listed twice (lines 1 and 3)" in done.stderr
