"""Images that go bad during training or inference stop the process with the file named, not an abort.

Caffe's ImageData (patch 0006): a missing, empty, truncated or undecodable image is a DataLoadError
naming the layer, the file and the list, raised in the thread that runs the net even when the
prefetch thread found it (pycaffe: RuntimeError; `caffe` CLI: one line, exit status 4); before the
patch a bad image was a glog CHECK failure (abort with a stack trace) and a truncated JPEG was
decoded by OpenCV with a grey lower part and trained on. tools/train.py turns it into one line and
exit status 4, keeping a snapshot of the progress, so that a rerun resumes. The stage-2 Python data
layer and tools/infer.py read images with PIL, which refuses truncated JPEGs.

The Caffe runs are subprocesses, so that a regression to an abort fails a test instead of killing
the test session.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dsrg.fileio import atomic_save_label_png, read_rgb

REPO = Path(__file__).resolve().parents[1]
CAFFE_CLI = Path(sys.executable).parent / "caffe"
ABORT_SIGNS = ("Check failure stack trace", "Check failed", "terminate called", "Aborted")


def write_jpeg(path, seed, size=32):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, quality=95)


def spoil(path, kind):
    """Turn the JPEG at `path` into a bad image file of the given kind."""
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    elif kind == "missing":
        path.unlink()
    else:
        raise ValueError(kind)


EXPECTED_GOT = {
    "truncated": "a truncated JPEG",
    "empty": "an empty file (0 bytes)",
    "garbage": "3000 bytes that OpenCV cannot decode as an image",
    "missing": "no readable file (No such file or directory)",
}


def image_folder(root, count=8, bad_position=None, kind="truncated"):
    """`count` small JPEGs under root/images and root/list.txt ("<name> <label>"); the image at
    `bad_position` spoiled. Returns (images folder, list path, bad image path or None)."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines, bad = [], None
    for position in range(count):
        path = images / f"img{position}.jpg"
        write_jpeg(path, position)
        lines.append(f"{path.name} {position % 2}\n")
        if position == bad_position:
            spoil(path, kind)
            bad = path
    source = root / "list.txt"
    source.write_text("".join(lines))
    return images, source, bad


IMAGE_DATA_NET = """
name: "imagedata"
layer {{ name: "data" type: "ImageData" top: "data" top: "label"
  image_data_param {{ source: "{source}" root_folder: "{root}/" batch_size: 2 shuffle: false }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "score"
  inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 0.001 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }}
"""


def write_solver(folder, net_text, max_iter=6):
    (folder / "net.prototxt").write_text(net_text)
    solver = folder / "solver.prototxt"
    solver.write_text(f'net: "{folder / "net.prototxt"}"\nbase_lr: 0.001\nlr_policy: "fixed"\nmomentum: 0.9\n'
                      f'max_iter: {max_iter}\nrandom_seed: 3\nsnapshot_prefix: "{folder / "cli"}"\n')
    return solver


def run(command, **options):
    env = dict(os.environ, GLOG_minloglevel="2", PYTHONPATH=str(REPO / "training"))
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=REPO, **options)


def assert_no_abort(result):
    assert result.returncode >= 0, f"killed by signal {-result.returncode}:\n{result.stderr[-3000:]}"
    for sign in ABORT_SIGNS:
        assert sign not in result.stderr, result.stderr[-3000:]


FORWARD_SCRIPT = """
import sys
import caffe
caffe.set_mode_cpu()
net = caffe.Net(sys.argv[1], caffe.TRAIN)
for forward in range(int(sys.argv[2])):
    try:
        net.forward()
    except RuntimeError as error:
        print(f"forward {forward}: {error}")
        try:
            net.forward()
        except RuntimeError as again:
            print(f"again: {again}")
        sys.exit(0)
print("no error")
"""


@pytest.mark.parametrize("kind", sorted(EXPECTED_GOT))
def test_imagedata_raises_naming_the_file_in_the_thread_that_runs_the_net(tmp_path, kind):
    # Image 5 of 8 with batch 2: found by the prefetch thread, raised by forward 2 (images 4 and 5).
    images, source, bad = image_folder(tmp_path, bad_position=5, kind=kind)
    (tmp_path / "net.prototxt").write_text(IMAGE_DATA_NET.format(source=source, root=images))
    result = run([sys.executable, "-c", FORWARD_SCRIPT, str(tmp_path / "net.prototxt"), "6"])
    assert_no_abort(result)
    assert result.returncode == 0, result.stderr[-3000:]
    message = (f"ImageData layer 'data': image {bad} (listed in {source}): expected a decodable image file, "
               f"got {EXPECTED_GOT[kind]}")
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"forward 2: {message}"), result.stdout
    assert lines[1].startswith(f"again: {message}"), result.stdout   # raised again, no hang


def test_imagedata_bad_first_image_is_an_error_at_setup(tmp_path):
    images, source, bad = image_folder(tmp_path, bad_position=0, kind="garbage")
    (tmp_path / "net.prototxt").write_text(IMAGE_DATA_NET.format(source=source, root=images))
    result = run([sys.executable, "-c", FORWARD_SCRIPT, str(tmp_path / "net.prototxt"), "1"])
    assert_no_abort(result)
    assert result.returncode == 1 and f"RuntimeError: ImageData layer 'data': image {bad}" in result.stderr


def test_imagedata_reads_good_and_exif_rotated_jpegs_as_opencv_does(tmp_path):
    """The patched reader decodes what imread decoded: sizes, EXIF orientation and pixel values."""
    images, source, _ = image_folder(tmp_path, count=2)
    rotated = images / "img1.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                      # rotate 90° clockwise to display
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (10, 20, 3), dtype=np.uint8)).save(
        rotated, quality=95, exif=exif.tobytes())
    (tmp_path / "net.prototxt").write_text(
        f'layer {{ name: "data" type: "ImageData" top: "data" top: "label"\n'
        f'  image_data_param {{ source: "{source}" root_folder: "{images}/" batch_size: 1 }} }}\n')
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import caffe
        caffe.set_mode_cpu()
        net = caffe.Net(sys.argv[1], caffe.TRAIN)
        for forward in range(2):
            net.forward()
            np.save(f"{sys.argv[2]}/forward{forward}.npy", net.blobs["data"].data)
        """)
    result = run([sys.executable, "-c", script, str(tmp_path / "net.prototxt"), str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    first = np.load(tmp_path / "forward0.npy")[0]
    with Image.open(images / "img0.jpg") as image:
        expected = np.asarray(image.convert("RGB"), dtype=np.float32)[:, :, ::-1].transpose(2, 0, 1)
    assert first.shape == (3, 32, 32)
    assert np.abs(first - expected).mean() < 2.0     # libjpeg versions may round a little differently
    assert np.load(tmp_path / "forward1.npy").shape == (1, 3, 20, 10)   # rotated by its EXIF tag


def train_command(solver, out, iters=6):
    return [sys.executable, str(REPO / "tools" / "train.py"), "--solver", str(solver), "--out", str(out),
            "--iters", str(iters), "--snapshot-every", "2", "--log-every", "1", "--no-progress"]


def test_train_stops_on_a_truncated_jpeg_with_exit_status_4_and_resumes(tmp_path):
    images, source, bad = image_folder(tmp_path, bad_position=6)
    solver = write_solver(tmp_path, IMAGE_DATA_NET.format(source=source, root=images))
    out = tmp_path / "out"
    result = run(train_command(solver, out))
    assert_no_abort(result)
    assert result.returncode == 4, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"train.py: iteration 3 stopped (solver {solver}): ImageData layer 'data': image {bad}")
    assert "a truncated JPEG" in last and "the snapshot at iteration 3 is kept" in last
    snapshots = sorted(path.name for path in (out / "snapshots").glob("*.solverstate"))
    assert snapshots == ["solver_iter_2.solverstate", "solver_iter_3.solverstate"]

    write_jpeg(bad, 6)
    result = run(train_command(solver, out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout and "solver_iter_3.solverstate" in result.stdout
    assert (out / "final.caffemodel").is_file()


def test_caffe_cli_stops_on_a_bad_image_with_one_line_and_exit_status_4(tmp_path):
    images, source, bad = image_folder(tmp_path, bad_position=4, kind="empty")
    solver = write_solver(tmp_path, IMAGE_DATA_NET.format(source=source, root=images))
    result = run([str(CAFFE_CLI), "train", f"--solver={solver}"])
    assert_no_abort(result)
    assert result.returncode == 4, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"ImageData layer 'data': image {bad} (listed in {source}): expected a decodable image file, "
        "got an empty file (0 bytes)")


SEGDATA_NET = """
name: "segdata"
layer {{ name: "data" type: "Python" top: "images" top: "labels"
  python_param {{ module: "pylayers.layer" layer: "ImageSegDataLayer"
    param_str: "{{'batch_size': 2, 'root_folder': '{root}', 'source': '{source}', 'mean': (104, 117, 123), 'crop_size': 8, 'shuffle': False}}" }} }}
layer {{ name: "score" type: "Convolution" bottom: "images" top: "score"
  convolution_param {{ num_output: 3 kernel_size: 1 weight_filler {{ type: "gaussian" std: 0.001 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "labels" top: "loss"
  loss_param {{ ignore_label: 255 }} }}
"""


def test_train_stops_on_a_truncated_jpeg_in_the_stage2_data_layer(tmp_path):
    images, _, bad = image_folder(tmp_path, bad_position=4)
    labels = tmp_path / "labels"
    for position in range(8):
        atomic_save_label_png(labels / f"img{position}.png", np.full((32, 32), position % 3, dtype=np.uint8))
    source = tmp_path / "seg_list.txt"
    source.write_text("".join(f"/images/img{position}.jpg /labels/img{position}.png\n" for position in range(8)))
    solver = write_solver(tmp_path, SEGDATA_NET.format(root=tmp_path, source=source))
    result = run(train_command(solver, tmp_path / "out"))
    assert_no_abort(result)
    assert result.returncode == 4, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"train.py: iteration 2 stopped (solver {solver}): ") and str(bad) in last
    assert "truncated" in last


def test_read_rgb_names_a_truncated_jpeg(tmp_path):
    path = tmp_path / "bad.jpg"
    write_jpeg(path, 0, size=64)
    spoil(path, "truncated")
    with pytest.raises(ValueError, match=rf"{path}: cannot read image \(image file is truncated"):
        read_rgb(path)
