"""Sharded inference (dsrg.shards, tools/infer.py --shard / --check-complete, run.sh WORKERS and DSRG_SHARD):
the shards of a list take every id once, their merged folder is byte-identical to one process's, and the
merge check names every missing, broken or foreign output."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caffe_helpers import load_tool
from dsrg.cli import run_main
from dsrg.fileio import atomic_save_label_png
from dsrg.shards import output_problems, parse_shard, shard_ids

REPO = Path(__file__).resolve().parents[1]
IDS = [f"img{index:02d}" for index in range(7)]
SIZES = [(40, 56), (64, 48), (48, 48), (33, 70), (56, 40), (72, 36), (50, 50)]

TINY_DEPLOY = """name: "tiny-deploy"
layer { name: "input" type: "Input" top: "images" input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 } } }
layer { name: "conv" type: "Convolution" bottom: "images" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 2
    weight_filler { type: "gaussian" std: 0.05 } bias_filler { type: "constant" value: 0 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "score" type: "Convolution" bottom: "conv" top: "score"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0 } } }
"""


# ------------------------------------------------------------------ shard selection

def test_shards_take_every_id_once_round_robin():
    ids = [f"id{index}" for index in range(11)]
    shards = [shard_ids(ids, index, 3) for index in range(3)]
    assert shards[0] == ["id0", "id3", "id6", "id9"] and shards[2] == ["id2", "id5", "id8"]
    assert sorted(sum(shards, [])) == sorted(ids)
    assert shard_ids(ids, 0, 1) == ids
    assert shard_ids(ids[:2], 2, 4) == []
    with pytest.raises(ValueError, match=r"shard 3/3: expected 0 ≤ K < N"):
        shard_ids(ids, 3, 3)


def test_parse_shard_and_infer_usage_errors(capsys):
    assert parse_shard("1/4") == (1, 4) and parse_shard("0/1") == (0, 1)
    infer = load_tool("infer")
    base = ["--deploy", "d", "--weights", "w", "--images", "i", "--ids", "l", "--out", "o"]
    assert infer.parse_args(base + ["--shard", "2/3"]).shard == (2, 3)
    for text, message in (("2/2", "expected 0 ≤ K < N"), ("1/0", "expected 0 ≤ K < N"),
                          ("-1/2", "expected K/N"), ("1of2", "expected K/N"), ("", "expected K/N")):
        with pytest.raises(SystemExit) as exit_info:
            infer.parse_args(base + [f"--shard={text}"])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


# ------------------------------------------------------------------ the merge check

def make_images(folder, ids=IDS, sizes=SIZES, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (height, width) in zip(ids, sizes):
        coarse = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
        image.save(folder / f"{name}.jpg", quality=95)


def infer_args(tmp_path, out, *more):
    return ["--deploy", str(tmp_path / "deploy.prototxt"), "--weights", str(tmp_path / "w.caffemodel"),
            "--images", str(tmp_path / "images"), "--ids", str(tmp_path / "ids.txt"), "--out", str(out),
            "--scale-mode", "relative", "--scales", "0.75,1", "--crf", "--no-progress", *more]


@pytest.fixture
def finished_folder(tmp_path):
    """A folder as infer.py leaves it (label maps of the images' sizes, the settings record), no Caffe."""
    infer = load_tool("infer")
    make_images(tmp_path / "images")
    (tmp_path / "ids.txt").write_text("\n".join(IDS) + "\n")
    out = tmp_path / "out"
    args = infer_args(tmp_path, out)
    for name, size in zip(IDS, SIZES):
        atomic_save_label_png(out / f"{name}.png", np.full(size, 1, np.uint8))
    settings = infer.inference_settings(infer.parse_args(args))
    (out / infer.CONFIG_NAME).write_text(json.dumps({**settings, "ids": "ids.txt", "images": len(IDS)}))
    return infer, out, args


def check(infer, args, capsys):
    status = run_main(infer.main, args + ["--check-complete"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err.splitlines()


def test_the_check_passes_a_complete_folder_and_names_each_problem(finished_folder, capsys):
    infer, out, args = finished_folder
    assert check(infer, args, capsys)[:2] == (0, f"infer.py: {out}: all 7 images done, made with these settings\n")
    (out / "img01.png").unlink()
    (out / "img03.png").write_bytes((out / "img03.png").read_bytes()[:40])
    atomic_save_label_png(out / "img05.png", np.zeros((5, 5), np.uint8))
    status, _, lines = check(infer, args, capsys)
    assert status == 1
    assert lines[0] == f"infer.py: {out / 'img01.png'}: missing"
    assert lines[1].startswith(f"infer.py: {out / 'img03.png'}: does not decode (")
    assert lines[2] == f"infer.py: {out / 'img05.png'}: 5×5 pixels, its image 36×72"
    assert lines[3].endswith(f"infer.py: {out}: 3 problems (listed above) in the outputs of 7 images")
    assert len(lines) == 4
    # a shard's check looks at its own ids only
    assert check(infer, args + ["--shard", "0/2"], capsys)[0] == 0


def test_the_check_refuses_other_settings_and_a_folder_without_a_record(finished_folder, capsys):
    infer, out, args = finished_folder
    status, _, lines = check(infer, [arg if arg != "0.75,1" else "1" for arg in args], capsys)
    assert status == 1 and len(lines) == 2
    assert lines[0] == (f"infer.py: {out} holds outputs made with other settings (scales: [0.75, 1.0] before, "
                        "[1.0] now); choose another --out or remove that folder")
    (out / infer.CONFIG_NAME).unlink()
    status, _, lines = check(infer, args, capsys)
    assert status == 1 and lines[0] == f"infer.py: {out / infer.CONFIG_NAME}: missing (no infer.py call has " \
                                       f"written into {out})"


def test_output_problems_checks_probabilities_too(tmp_path):
    out, probs = tmp_path / "out", tmp_path / "probs"
    atomic_save_label_png(out / "a.png", np.zeros((4, 6), np.uint8))
    atomic_save_label_png(out / "b.png", np.zeros((4, 6), np.uint8))
    probs.mkdir()
    np.save(probs / "a.npy", np.zeros((3, 4, 5), np.float16))
    assert output_problems(out, ["a", "b"], probs_dir=probs) == [
        f"{probs / 'a.npy'}: shape (3, 4, 5), expected C×4×6", f"{probs / 'b.npy'}: missing"]


# ------------------------------------------------------------------ sharded = single process, through Caffe

def write_tiny_net(folder):
    import caffe

    (folder / "deploy.prototxt").write_text(TINY_DEPLOY)
    caffe.set_mode_cpu()
    caffe.set_random_seed(3)
    caffe.Net(str(folder / "deploy.prototxt"), caffe.TEST).save(str(folder / "w.caffemodel"))


def folder_bytes(folder, suffix=""):
    return {path.name: path.read_bytes() for path in sorted(Path(folder).iterdir()) if path.name.endswith(suffix)}


def tool_env():
    return dict(os.environ, PYTHONPATH=f"{REPO / 'training'}{os.pathsep}{REPO}", GLOG_minloglevel="2")


def test_concurrent_shards_give_the_single_process_folder_byte_for_byte(tmp_path):
    pytest.importorskip("caffe")
    write_tiny_net(tmp_path)
    make_images(tmp_path / "images")
    (tmp_path / "ids.txt").write_text("\n".join(IDS) + "\n")
    infer = load_tool("infer")
    assert infer.main(infer_args(tmp_path, tmp_path / "single")) == 0
    command = [sys.executable, str(REPO / "tools" / "infer.py")]
    shards = [subprocess.Popen(command + infer_args(tmp_path, tmp_path / "sharded", "--shard", f"{index}/3"),
                               env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for index in range(3)]
    for index, shard in enumerate(shards):
        stdout, stderr = shard.communicate(timeout=300)
        assert shard.returncode == 0, stderr[-2000:]
        assert f"infer.py shard {index}/3: 0 of {len(IDS[index::3])} images already done" in stdout
    single, sharded = folder_bytes(tmp_path / "single"), folder_bytes(tmp_path / "sharded")
    assert sorted(single) == sorted([f"{name}.png" for name in IDS] + [infer.CONFIG_NAME])
    assert single == sharded
    labels = np.concatenate([np.asarray(Image.open(tmp_path / "single" / f"{name}.png")).ravel() for name in IDS])
    assert len(np.unique(labels)) > 1, "the tiny net should not label everything alike"
    assert infer.main(infer_args(tmp_path, tmp_path / "sharded", "--check-complete")) == 0


def run_sh(run_dir, *steps, **environ):
    env = dict(tool_env(), EXP="demo", RUN_DIR=str(run_dir), DSRG_SKIP_SETUP="1", GPU="", PSEUDO_RESTRICT="0",
               PSEUDO_SCALES="40,56")
    env.update(environ)
    for name in ("PASCAL_DIR", "CUES", "INIT_WEIGHTS", "WORKERS", "DSRG_SHARD", "OPENBLAS_NUM_THREADS"):
        if name not in environ:
            env.pop(name, None)
    return subprocess.run(["bash", str(REPO / "run.sh"), *steps], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def demo_run_dir(tmp_path, name):
    """A demo run folder with what step pseudo needs: the deploy net, a 'stage-1' model, images, ids."""
    run_dir = tmp_path / name
    for folder in ("prototxt", "stage1", "data/lists"):
        (run_dir / folder).mkdir(parents=True)
    (run_dir / "prototxt" / "deploy.prototxt").write_text(TINY_DEPLOY)
    (run_dir / "stage1" / "final.caffemodel").write_bytes((tmp_path / "w.caffemodel").read_bytes())
    make_images(run_dir / "data" / "JPEGImages")
    (run_dir / "data" / "lists" / "train_id.txt").write_text("\n".join(IDS) + "\n")
    return run_dir


def test_run_sh_pseudo_with_workers_and_as_slurm_shards_matches_one_worker(tmp_path):
    pytest.importorskip("caffe")
    write_tiny_net(tmp_path)
    runs = {name: demo_run_dir(tmp_path, name) for name in ("one", "two", "array")}
    result = run_sh(runs["one"], "pseudo", WORKERS="1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "all 7 images done, made with these settings" in result.stdout
    result = run_sh(runs["two"], "pseudo", WORKERS="2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "inference: 2 workers, " in result.stderr
    assert "infer.py shard 1/2: 0 of 3 images already done" in result.stdout
    # as a Slurm array would: each task one shard, then a plain run checks and marks the step finished
    for shard in ("1/2", "0/2"):
        result = run_sh(runs["array"], "pseudo", DSRG_SHARD=shard)
        assert result.returncode == 0, result.stderr[-3000:]
        assert not (runs["array"] / ".done" / "pseudo").exists()
    assert len(list((runs["array"] / "logs").glob("run-*-shard1of2.log"))) == 1
    result = run_sh(runs["array"], "pseudo", WORKERS="2")
    assert result.returncode == 0 and (runs["array"] / ".done" / "pseudo").exists(), result.stderr[-3000:]
    reference = folder_bytes(runs["one"] / "pseudo_labels", ".png")
    assert len(reference) == len(IDS)
    for name in ("two", "array"):
        assert folder_bytes(runs[name] / "pseudo_labels", ".png") == reference, name
    result = run_sh(runs["array"], "stage1", DSRG_SHARD="0/2")
    assert result.returncode == 1 and "only the steps pseudo and test run in shards (got stage1)" in result.stderr


def test_a_gpu_list_is_checked_gpu_by_gpu(tmp_path):
    probe = subprocess.run([sys.executable, "-c", "import caffe; caffe.set_device(0); caffe.set_mode_gpu()"],
                           capture_output=True, timeout=60)
    if probe.returncode == 0:
        pytest.skip("this Caffe can use GPU 0")
    done = run_sh(tmp_path / "run", "data", GPU="0,1")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("[run] ERROR: GPU=0,1, but the Caffe in ")
    assert "cannot use GPU 0 " in done.stderr
