"""End-to-end smoke test of run.sh on a handful of synthetic images with a few iterations per stage.

data (images and image labels only: the demo's default, CUES_DEFAULT=generate) -> prototxt rendering -> cues from the image labels (CAM net,
3 iterations; heatmaps; saliency; cue file) -> stage 1 (3 iterations) -> grown seeds + seed quality -> pseudo labels
(multi-scale + CRF, image labels only) -> stage-2 list -> stage 2 (3 iterations) -> multi-scale test
-> evaluation -> panels -> summary; then a rerun that skips every finished step. The figures are
meaningless after 3 iterations; the test checks that every step ran and produced what the next one
needs. This first run leaves CUES unset; a second run, with CUES=generator, takes the generator's
cue file through stage 1.
"""
import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TRAIN_IMAGES, VAL_IMAGES = 10, 4


def run_pipeline(run_dir, *steps, cues=None):
    env = dict(os.environ, EXP="demo", RUN_DIR=str(run_dir), DEMO_TRAIN=str(TRAIN_IMAGES),
               DEMO_VAL=str(VAL_IMAGES), STAGE1_ITERS="3", STAGE2_ITERS="3", CAM_ITERS="3", LOG_EVERY="1",
               DSRG_SKIP_SETUP="1", GPU="")
    env.pop("PASCAL_DIR", None)
    env.pop("CUES", None)
    env.pop("INIT_WEIGHTS", None)
    if cues is not None:
        env["CUES"] = cues
    result = subprocess.run(["bash", str(REPO / "run.sh"), *steps], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"run.sh {' '.join(steps)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def test_run_sh_end_to_end_on_a_few_synthetic_images(tmp_path):
    run_dir = tmp_path / "run"
    started = time.time()
    result = run_pipeline(run_dir)
    first_run = time.time() - started

    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"final val mIoU: \d+\.\d\d", lines[-1]), lines[-5:]
    final = json.loads((run_dir / "eval_val_stage2.json").read_text())
    assert lines[-1] == f"final val mIoU: {final['miou']:.2f}"
    assert 0.0 <= final["miou"] <= 100.0

    for name in ("stage1_train.prototxt", "stage1_solver.prototxt", "stage2_train.prototxt",
                 "stage2_solver.prototxt", "deploy.prototxt", "cam_train.prototxt", "cam_deploy.prototxt",
                 "cam_solver.prototxt"):
        assert not re.search(r"\$\{[A-Za-z_]\w*\}", (run_dir / "prototxt" / name).read_text()), name
    assert (run_dir / "prototxt" / "config.sh").is_file()
    assert str(run_dir / "data" / "JPEGImages") in (run_dir / "prototxt" / "stage1_train.prototxt").read_text()
    for name in ("environment.txt", "pip_freeze.txt", "caffe_version.txt", "git_revision.txt"):
        assert (run_dir / "env" / name).stat().st_size > 0
    assert "EXP=demo" in (run_dir / "env" / "environment.txt").read_text()

    # label-only by default: no generator cues; the cue file comes from the CAM net and the saliency maps, with
    # the demo's foreground threshold (config.sh) and DSRG's background threshold
    assert not (run_dir / "data" / "localization_cues.pickle.gz").exists()
    cue_file = run_dir / "cues" / "localization_cues.pickle.gz"
    cue_settings = json.loads(cue_file.with_name(cue_file.name + ".json").read_text())["settings"]
    assert (cue_settings["fg_threshold"], cue_settings["bg_threshold"]) == (0.6, 0.06)
    assert "CAM_FG_THRESHOLD=0.6" in (run_dir / "env" / "environment.txt").read_text()
    assert str(cue_file) in (run_dir / "prototxt" / "stage1_train.prototxt").read_text()
    labels = (run_dir / "data" / "lists" / "image_labels.txt").read_text().splitlines()
    assert len(labels) == TRAIN_IMAGES
    from dsrg.cues import load_cues
    mapping = load_cues(cue_file)
    assert len(mapping) == 2 * TRAIN_IMAGES
    first_id, *first_labels = labels[0].split()
    labels_by_id = {line.split()[0]: {int(label) for label in line.split()[1:]} for line in labels}
    assert mapping["0_labels"].tolist() == [int(label) for label in first_labels]
    heatmaps = np.load(run_dir / "cams" / f"{first_id}.npy")
    assert heatmaps.shape == (6, 21, 21)
    assert len(list((run_dir / "saliency").glob("*.png"))) == TRAIN_IMAGES
    for stage in ("stage1", "stage2", "cam"):
        done = json.loads((run_dir / stage / "train_done.json").read_text())
        assert done["iterations"] == 3
        assert (run_dir / stage / "final.caffemodel").stat().st_size > 0
        assert (run_dir / stage / "loss_curve.png").stat().st_size > 0
        log = (run_dir / stage / "train_log.tsv").read_text().splitlines()
        assert len(log) == 4 and log[0].startswith("iteration\t")
    assert "loss-Seed" in (run_dir / "stage1" / "train_log.tsv").read_text()
    assert "loss-Constrain" in (run_dir / "stage1" / "train_log.tsv").read_text()
    assert json.loads((run_dir / "stage2" / "train_done.json").read_text())["weights"].endswith(
        "stage1/final.caffemodel")

    train_ids = (run_dir / "data" / "lists" / "train_id.txt").read_text().split()
    val_ids = (run_dir / "data" / "lists" / "val_id.txt").read_text().split()
    assert len(train_ids) == TRAIN_IMAGES and len(val_ids) == VAL_IMAGES
    grown = np.load(run_dir / "grown_seeds" / f"{train_ids[0]}.npy")
    assert grown.shape == (7, 21, 21) and set(np.unique(grown)) <= {0, 1}
    assert len(list((run_dir / "grown_seeds").glob("*.npy"))) == TRAIN_IMAGES
    for name in ("seeds_cues.json", "seeds_grown.json"):
        assert (run_dir / name).is_file()

    for image_name in train_ids:
        with Image.open(run_dir / "pseudo_labels" / f"{image_name}.png") as label:
            assert label.mode == "P"
            pseudo = np.asarray(label)
        with Image.open(run_dir / "data" / "JPEGImages" / f"{image_name}.jpg") as image:
            assert pseudo.shape == image.size[::-1]
        # the demo's pseudo labels keep to each image's labelled classes (PSEUDO_RESTRICT=1 in its config.sh)
        assert set(np.unique(pseudo).tolist()) <= {0, *labels_by_id[image_name]}
    # scores summed over the scales (the release's rule); the argmax over every class on val, and over the
    # image's labelled classes for the pseudo labels
    for folder, restrict in (("pseudo_labels", str(cue_file)), ("val_stage1", None), ("val_stage2", None)):
        config = json.loads((run_dir / folder / "infer_config.json").read_text())
        assert (config["fuse"], config["restrict_to_labels"], config["crf"]) == ("scores", restrict, True)
    listed = (run_dir / "stage2_train.txt").read_text().splitlines()
    assert len(listed) == TRAIN_IMAGES and all(Path("/", line.split()[1]).is_file() for line in listed)
    for folder in ("val_stage1", "val_stage2"):
        assert sorted(path.stem for path in (run_dir / folder).glob("*.png")) == sorted(val_ids)
    for name in ("eval_train_pseudo_labels.json", "eval_val_stage1.json"):
        assert 0.0 <= json.loads((run_dir / name).read_text())["miou"] <= 100.0
    assert list((run_dir / "panels_val").glob("*.png"))
    steps = [line.split("\t")[0] for line in (run_dir / "step_times.tsv").read_text().splitlines()]
    assert steps == ["setup", "data", "prepare", "cues", "stage1", "seeds", "pseudo", "stage2list", "stage2", "test",
                     "evaluate", "visualize"]

    started = time.time()
    rerun = run_pipeline(run_dir)
    assert time.time() - started < max(30.0, first_run / 2)
    assert rerun.stderr.count("finished before, skipped") == 11
    assert rerun.stdout.strip().splitlines()[-1] == lines[-1]


def test_run_sh_with_the_generators_cues(tmp_path):
    run_dir = tmp_path / "run"
    result = run_pipeline(run_dir, "data", "prepare", "cues", "stage1", cues="generator")
    cue_file = run_dir / "data" / "localization_cues.pickle.gz"
    assert cue_file.is_file() and not (run_dir / "cues").exists() and not (run_dir / "cam").exists()
    assert f"cue file {cue_file} is used; nothing to make" in result.stderr
    assert str(cue_file) in (run_dir / "prototxt" / "stage1_train.prototxt").read_text()
    assert json.loads((run_dir / "stage1" / "train_done.json").read_text())["iterations"] == 3
